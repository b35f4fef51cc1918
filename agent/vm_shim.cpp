#include "agent/vm_shim.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "agent/files.h"
#include "agent/microvm.h"
#include "agent/run_network.h"
#include "engine/exec.h"
#include "engine/json.h"

namespace platform::agent {
namespace fs = std::filesystem;

namespace {

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

bool interface_up(int sock, const char* name, std::string* why) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (::ioctl(sock, SIOCGIFFLAGS, &ifr) != 0) return *why = errno_text(std::string("SIOCGIFFLAGS ") + name), false;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(sock, SIOCSIFFLAGS, &ifr) != 0) return *why = errno_text(std::string("SIOCSIFFLAGS ") + name), false;
  return true;
}

bool set_address(int sock, const char* name, unsigned long request, const char* address, std::string* why) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
  sin->sin_family = AF_INET;
  ::inet_pton(AF_INET, address, &sin->sin_addr);
  if (::ioctl(sock, request, &ifr) != 0) return *why = errno_text(std::string("address ") + address + " on " + name), false;
  return true;
}

bool write_sysctl(const std::string& path, std::string* why) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  const bool ok = fd >= 0 && ::write(fd, "1", 1) == 1;
  if (!ok) *why = errno_text(path);
  if (fd >= 0) ::close(fd);
  return ok;
}

// Routes `address`/32 through tap0 to the guest, forwards, and answers ARP for it on the uplink.
bool route_to_guest(int sock, const std::string& address, std::string* why) {
  rtentry rt{};
  auto* dst = reinterpret_cast<sockaddr_in*>(&rt.rt_dst);
  auto* gw = reinterpret_cast<sockaddr_in*>(&rt.rt_gateway);
  auto* mask = reinterpret_cast<sockaddr_in*>(&rt.rt_genmask);
  dst->sin_family = gw->sin_family = mask->sin_family = AF_INET;
  if (::inet_pton(AF_INET, address.c_str(), &dst->sin_addr) != 1) return *why = "not an IPv4 address: " + address, false;
  ::inet_pton(AF_INET, kVmGuestAddress, &gw->sin_addr);
  mask->sin_addr.s_addr = 0xffffffffu;
  rt.rt_flags = RTF_UP | RTF_GATEWAY | RTF_HOST;
  char dev[] = "tap0";
  rt.rt_dev = dev;
  if (::ioctl(sock, SIOCADDRT, &rt) != 0 && errno != EEXIST) return *why = errno_text("route " + address + " via the guest"), false;
  // /proc/sys/net is the namespace's own once the shim has joined it.
  return write_sysctl("/proc/sys/net/ipv4/ip_forward", why) &&
         write_sysctl(std::string("/proc/sys/net/ipv4/conf/") + kRunUplink + "/proxy_arp", why);
}

// The VM's network namespace (the run's, `netns`, or a new one of our own) with lo up and tap0 (host
// side of the VM's link), and `address` routed on to the guest when given; the tap's fd, or -1.
int vm_network(const std::string& netns, const std::string& address, std::string* why) {
  if (netns.empty()) {
    if (::unshare(CLONE_NEWNET) != 0) return *why = errno_text("unshare(CLONE_NEWNET)"), -1;
  } else {
    int fd = ::open(netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return *why = errno_text(netns), -1;
    const bool joined = ::setns(fd, CLONE_NEWNET) == 0;
    if (!joined) *why = errno_text("setns " + netns);
    ::close(fd);
    if (!joined) return -1;
  }
  int tap = ::open("/dev/net/tun", O_RDWR);
  if (tap < 0) return *why = errno_text("/dev/net/tun"), -1;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "tap0", IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(tap, TUNSETIFF, &ifr) != 0) {
    *why = errno_text("TUNSETIFF tap0");
    ::close(tap);
    return -1;
  }
  int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const bool ok = sock >= 0 && interface_up(sock, "lo", why) &&
                  set_address(sock, "tap0", SIOCSIFADDR, kVmHostAddress, why) &&
                  set_address(sock, "tap0", SIOCSIFNETMASK, "255.255.255.252", why) && interface_up(sock, "tap0", why) &&
                  (address.empty() || route_to_guest(sock, address, why));
  if (sock >= 0) ::close(sock);
  if (!ok) {
    ::close(tap);
    return -1;
  }
  return tap;
}

}  // namespace

int run_vm_shim(const std::string& dir) {
  const fs::path d = dir;
  write_atomically(d / "shim.pid", std::to_string(::getpid()));
  auto failed = [&](const std::string& why) {
    write_atomically(d / "shim.state", "failed " + why);
    return 1;
  };
  const auto spec = Json::parse(read_text(d / "vm.json"), nullptr, false);
  if (!spec.is_object() || !spec.contains("argv") || !spec["argv"].is_array()) return failed("vm.json is missing or malformed");
  auto argv = spec["argv"].get<std::vector<std::string>>();
  int tap = -1;
  if (spec.value("network", false)) {
    std::string why;
    tap = vm_network(spec.value("netns", ""), spec.value("address", ""), &why);
    if (tap < 0) return failed("cannot give the VM its network: " + why);  // argv names it as fd 3
  }
  pid_t qemu = ::fork();
  if (qemu < 0) return failed(errno_text("fork"));
  if (qemu == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // no VM outlives its shim (nothing would learn how it ended)
    int in = ::open("/dev/null", O_RDONLY);
    int log = ::open((d / "qemu.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0640);
    ::dup2(in, 0);
    ::dup2(log, 1);
    ::dup2(log, 2);
    if (tap >= 0) ::dup2(tap, 3);  // dup2 clears close-on-exec: QEMU inherits it as fd 3
    if (::chdir(dir.c_str()) != 0) ::_exit(126);  // the control socket's path is relative to it
    exec_or_exit(argv);
  }
  if (tap >= 0) ::close(tap);
  write_atomically(d / "shim.state", "running " + std::to_string(qemu));
  int status = 0;
  while (::waitpid(qemu, &status, 0) < 0 && errno == EINTR) {
  }
  auto verdict = parse_verdict(read_text(d / "console.log"));
  Json exit = {{"exit_code", verdict ? verdict->exit_code : -1},
               {"signal", verdict ? verdict->signal : SIGKILL},  // no verdict: the VM was killed under it
               {"oom", verdict && verdict->oom},
               {"at", static_cast<std::int64_t>(std::time(nullptr))}};
  if (!verdict) exit["qemu"] = WIFEXITED(status) ? "exited " + std::to_string(WEXITSTATUS(status))
                                                  : "killed by signal " + std::to_string(WTERMSIG(status));
  write_atomically(d / "exit.json", exit.dump());
  write_atomically(d / "shim.state", "exited");
  return 0;
}

}  // namespace platform::agent
