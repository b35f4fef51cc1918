#include "agent/init/guest_setup.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace platform::init {

void say(const std::string& line) {
  std::string out = "platform-init: " + line + "\n";
  (void)!::write(1, out.data(), out.size());
}

RunFile read_run(const char* path) {
  RunFile r;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const auto sp = line.find(' ');
    const auto key = line.substr(0, sp), value = sp == std::string::npos ? "" : line.substr(sp + 1);
    if (key == "argv") r.argv.push_back(value);
    else if (key == "env") r.env.push_back(value);
    else if (key == "module") r.modules.push_back(value);
    else if (key == "dir") r.dir = value;
    else if (key == "uid") r.uid = static_cast<uid_t>(std::strtoul(value.c_str(), nullptr, 10));
    else if (key == "gid") r.gid = static_cast<gid_t>(std::strtoul(value.c_str(), nullptr, 10));
    else if (key == "stdio") r.serial_stdio = value == "serial";
    else if (key == "memory_mib") r.memory_mib = std::strtol(value.c_str(), nullptr, 10);
    else if (key == "address") r.address = value;
    else if (key == "hostname") r.hostname = value;
    else if (key == "net") {
      std::istringstream words(value);
      words >> r.guest_cidr >> r.gateway;
    }
  }
  return r;
}

namespace {

bool write_file(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  ::close(fd);
  return ok;
}

bool set_flags_up(int sock, const char* ifname) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
  if (::ioctl(sock, SIOCGIFFLAGS, &ifr) != 0) return false;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  return ::ioctl(sock, SIOCSIFFLAGS, &ifr) == 0;
}

bool set_v4(int sock, const char* ifname, unsigned long request, const std::string& address) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
  auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
  sin->sin_family = AF_INET;
  if (::inet_pton(AF_INET, address.c_str(), &sin->sin_addr) != 1) return false;
  return ::ioctl(sock, request, &ifr) == 0;
}

}  // namespace

void mount_basics() {
  for (const char* d : {"/proc", "/sys", "/dev", "/run"}) ::mkdir(d, 0755);
  ::mkdir("/tmp", 01777);
  ::chmod("/tmp", 01777);
  ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  ::mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  ::mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, nullptr);
  ::mkdir("/dev/pts", 0755);
  ::mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
  ::mkdir("/dev/shm", 01777);
  ::mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  ::mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755");
}

void load_modules(const std::vector<std::string>& paths) {
  for (const auto& p : paths) {
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      say("module " + p + " is missing: " + std::strerror(errno));
      continue;
    }
    if (::syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST)
      say("cannot load " + p + ": " + std::strerror(errno));
    ::close(fd);
  }
}

void setup_network(const RunFile& run) {
  int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) {
    say(std::string("no network: ") + std::strerror(errno));
    return;
  }
  set_flags_up(sock, "lo");
  if (!run.hostname.empty() && ::sethostname(run.hostname.data(), run.hostname.size()) != 0)
    say(std::string("cannot set the host name: ") + std::strerror(errno));
  if (run.guest_cidr.empty()) {
    ::close(sock);
    return;
  }
  const auto slash = run.guest_cidr.find('/');
  const auto address = run.guest_cidr.substr(0, slash);
  const int prefix = slash == std::string::npos ? 32 : std::atoi(run.guest_cidr.c_str() + slash + 1);
  const std::uint32_t mask = prefix <= 0 ? 0 : ~std::uint32_t{0} << (32 - prefix);
  in_addr m{htonl(mask)};
  char mask_text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &m, mask_text, sizeof mask_text);
  // The virtio-net device appears once its driver has probed it: wait for eth0 a little.
  bool up = false;
  for (int i = 0; i < 200 && !up; ++i) {
    up = set_v4(sock, "eth0", SIOCSIFADDR, address);
    if (!up) ::usleep(10000);
  }
  if (!up || !set_v4(sock, "eth0", SIOCSIFNETMASK, mask_text) || !set_flags_up(sock, "eth0")) {
    say("cannot configure eth0 with " + run.guest_cidr + ": " + std::strerror(errno));
    ::close(sock);
    return;
  }
  if (!run.gateway.empty()) {
    rtentry rt{};
    auto* dst = reinterpret_cast<sockaddr_in*>(&rt.rt_dst);
    auto* gw = reinterpret_cast<sockaddr_in*>(&rt.rt_gateway);
    auto* msk = reinterpret_cast<sockaddr_in*>(&rt.rt_genmask);
    dst->sin_family = gw->sin_family = msk->sin_family = AF_INET;
    ::inet_pton(AF_INET, run.gateway.c_str(), &gw->sin_addr);
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    char dev[] = "eth0";
    rt.rt_dev = dev;
    if (::ioctl(sock, SIOCADDRT, &rt) != 0) say(std::string("cannot add the default route: ") + std::strerror(errno));
  }
  // The instance's address as an alias of eth0: the host routes it here through the VM's tap.
  if (!run.address.empty() &&
      !(set_v4(sock, "eth0:1", SIOCSIFADDR, run.address) && set_v4(sock, "eth0:1", SIOCSIFNETMASK, "255.255.255.255") &&
        set_flags_up(sock, "eth0:1")))
    say("cannot add the instance's address " + run.address + ": " + std::strerror(errno));
  ::close(sock);
}

bool setup_memory_cgroup(long memory_mib) {
  if (memory_mib <= 0) return false;
  ::mkdir("/sys/fs/cgroup", 0755);
  if (::mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    say(std::string("no cgroup2 (the memory limit is the VM's size): ") + std::strerror(errno));
    return false;
  }
  ::mkdir("/sys/fs/cgroup/app", 0755);
  if (!write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory") ||
      !write_file("/sys/fs/cgroup/app/memory.max", std::to_string(memory_mib * 1024 * 1024))) {
    say(std::string("cannot set the memory limit: ") + std::strerror(errno));
    return false;
  }
  return true;
}

void join_app_cgroup(pid_t pid) { write_file("/sys/fs/cgroup/app/cgroup.procs", std::to_string(pid)); }

bool app_cgroup_oom_killed() {
  std::ifstream in("/sys/fs/cgroup/app/memory.events");
  std::string key;
  long value = 0;
  while (in >> key >> value)
    if (key == "oom_kill" && value > 0) return true;
  return false;
}

void mount_secrets(uid_t uid, gid_t gid) {
  struct stat st {};
  if (::stat("/platform/secrets", &st) != 0) return;
  ::chown("/platform/secrets", uid, gid);
  ::chmod("/platform/secrets", 0400);
  ::mkdir("/run/platform", 0755);
  int fd = ::open("/run/platform/secrets", O_WRONLY | O_CREAT | O_CLOEXEC, 0400);
  if (fd >= 0) ::close(fd);
  if (::mount("/platform/secrets", "/run/platform/secrets", nullptr, MS_BIND, nullptr) != 0 ||
      ::mount(nullptr, "/run/platform/secrets", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              nullptr) != 0)
    say(std::string("cannot mount the secrets file read-only: ") + std::strerror(errno));
}

int open_serial(const char* path, int flags) {
  int fd = ::open(path, flags | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return -1;
  termios t{};
  if (::tcgetattr(fd, &t) == 0) {
    ::cfmakeraw(&t);
    t.c_cflag |= CLOCAL;   // no modem lines: never wait for a carrier, never hang up
    t.c_cflag &= ~HUPCL;
    ::tcsetattr(fd, TCSANOW, &t);
  }
  return fd;
}

int open_virtio_port(const std::string& name, int wait_ms) {
  for (int waited = 0;; waited += 10) {
    if (DIR* d = ::opendir("/sys/class/virtio-ports")) {
      int fd = -1;
      while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        const std::string entry = e->d_name;
        std::ifstream f("/sys/class/virtio-ports/" + entry + "/name");
        std::string got;
        if (!std::getline(f, got) || got != name) continue;
        fd = ::open(("/dev/" + entry).c_str(), O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);  // devtmpfs may lag
        break;
      }
      ::closedir(d);
      if (fd >= 0) return fd;
    }
    if (waited >= wait_ms) return -1;
    ::usleep(10000);
  }
}

}  // namespace platform::init
