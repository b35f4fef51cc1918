#include "agent/microvm.h"

#include <archive.h>
#include <archive_entry.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "agent/files.h"
#include "engine/error.h"
#include "engine/exec.h"

namespace platform::agent {
namespace fs = std::filesystem;

namespace {

struct Writer {
  archive* a = archive_write_new();
  ~Writer() { archive_write_free(a); }
  [[noreturn]] void fail(const std::string& what) const {
    const char* e = archive_error_string(a);
    throw PlatformError(ErrorCode::internal, what + ": " + (e ? e : "unknown error"), "");
  }
  void add(const std::string& name, const struct stat& st, const std::string& data, const std::string& link = {}) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_copy_stat(e, &st);
    if (!link.empty()) archive_entry_set_symlink(e, link.c_str());
    archive_entry_set_size(e, S_ISREG(st.st_mode) ? static_cast<la_int64_t>(data.size()) : 0);
    if (archive_write_header(a, e) != ARCHIVE_OK) {
      archive_entry_free(e);
      fail("cannot add " + name + " to the initramfs");
    }
    if (S_ISREG(st.st_mode) && !data.empty() &&
        archive_write_data(a, data.data(), data.size()) != static_cast<la_ssize_t>(data.size())) {
      archive_entry_free(e);
      fail("cannot write " + name + " into the initramfs");
    }
    archive_entry_free(e);
  }
};

struct stat file_stat(mode_t mode, std::size_t size) {
  struct stat st {};
  st.st_mode = mode;
  st.st_size = static_cast<off_t>(size);
  st.st_nlink = 1;
  return st;
}

}  // namespace

std::vector<std::string> GuestKit::modules() const {
  std::vector<std::string> out;
  if (modules_dir.empty()) return out;
  std::istringstream order(read_text(fs::path(modules_dir) / "load-order"));
  for (std::string name; std::getline(order, name);)
    if (!name.empty() && name.find('/') == std::string::npos) out.push_back((fs::path(modules_dir) / name).string());
  return out;
}

std::string GuestKit::missing() const {
  if (::access(kernel.c_str(), R_OK) != 0) return "the guest kernel is missing at " + kernel + " (scripts/setup fetches it)";
  if (::access(init.c_str(), X_OK) != 0) return "platform-init is missing at " + init + " (scripts/setup builds it)";
  if (modules().empty()) return "the guest's virtio modules are missing in " + modules_dir + " (scripts/setup unpacks them)";
  const auto mods = modules();
  for (const auto& m : mods)
    if (::access(m.c_str(), R_OK) != 0) return "the guest module " + m + " is missing (scripts/setup unpacks it)";
  // What every VM needs: its transport, its network and the agent's control line (a kit from before the
  // control line moved to a virtio port lacks the last).
  for (const std::string need : {"virtio_mmio.ko", "virtio_net.ko", "virtio_console.ko"})
    if (std::none_of(mods.begin(), mods.end(), [&](const std::string& m) { return fs::path(m).filename() == need; }))
      return "the guest kit in " + modules_dir + " has no " + need + " (run scripts/setup again: it fetches the kit anew)";
  return "";
}

void build_initramfs(const std::string& rootfs, const std::string& init, const GuestBoot& boot,
                     const std::string& out_path) {
  Writer w;
  archive_write_set_format_cpio_newc(w.a);
  if (archive_write_open_filename(w.a, out_path.c_str()) != ARCHIVE_OK) w.fail("cannot create " + out_path);
  for (auto it = fs::recursive_directory_iterator(rootfs); it != fs::recursive_directory_iterator(); ++it) {
    const auto rel = fs::relative(it->path(), rootfs).string();
    if (rel == "init" || rel == "platform" || rel.rfind("platform/", 0) == 0) continue;  // ours
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) w.add(rel, st, "", fs::read_symlink(it->path()).string());
    else if (S_ISREG(st.st_mode)) w.add(rel, st, read_text(it->path()));
    else if (S_ISDIR(st.st_mode)) w.add(rel, st, "");
  }
  const auto& p = boot.process;
  std::string run;
  for (const auto& a : p.argv) run += "argv " + a + "\n";
  for (const auto& [k, v] : p.env) run += "env " + k + "=" + v + "\n";
  run += "dir " + p.workdir + "\nuid " + std::to_string(p.uid) + "\ngid " + std::to_string(p.gid) + "\n";
  if (boot.memory_mib > 0) run += "memory_mib " + std::to_string(boot.memory_mib) + "\n";
  if (!boot.guest_cidr.empty()) run += "net " + boot.guest_cidr + " " + boot.gateway + "\n";
  if (!boot.guest_cidr.empty() && !boot.instance_address.empty()) run += "address " + boot.instance_address + "\n";
  if (boot.serial_ports) run += "stdio serial\n";
  if (!boot.hostname.empty()) run += "hostname " + boot.hostname + "\n";
  const auto init_bytes = read_text(init);
  if (init_bytes.empty()) throw PlatformError(ErrorCode::internal, "platform-init is missing at " + init, "Build it: scripts/setup.");
  w.add("init", file_stat(S_IFREG | 0755, init_bytes.size()), init_bytes);
  w.add("platform", file_stat(S_IFDIR | 0700, 0), "");
  if (!boot.modules.empty()) w.add("platform/modules", file_stat(S_IFDIR | 0700, 0), "");
  for (const auto& m : boot.modules) {
    const auto bytes = read_text(m);
    if (bytes.empty()) throw PlatformError(ErrorCode::internal, "the guest module " + m + " is missing", "Run scripts/setup.");
    const auto name = "platform/modules/" + fs::path(m).filename().string();
    w.add(name, file_stat(S_IFREG | 0600, bytes.size()), bytes);
    run += "module /" + name + "\n";
  }
  if (!boot.secrets_file.empty()) {
    const auto bytes = read_text(boot.secrets_file);
    w.add("platform/secrets", file_stat(S_IFREG | 0400, bytes.size()), bytes);
  }
  w.add("platform/run", file_stat(S_IFREG | 0600, run.size()), run);
  if (archive_write_close(w.a) != ARCHIVE_OK) w.fail("cannot finish " + out_path);
}

namespace {
// The host CPU's clock in kHz ("cpu MHz" of /proc/cpuinfo), for the guest's TSC. Under TCG the guest's
// early TSC calibration against the PIT sometimes fails (timing too noisy), and a microvm has no HPET or
// PM timer to fall back on: the kernel then hangs. Giving it the frequency skips the calibration.
long host_tsc_khz() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("cpu MHz", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return static_cast<long>(std::stod(line.substr(colon + 1)) * 1000);
    }
  return 2'000'000;
}
}  // namespace

std::string mac_for(const std::string& seed) {
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : seed) h = (h ^ c) * 1099511628211ULL;
  char buf[18];
  std::snprintf(buf, sizeof buf, "02:%02x:%02x:%02x:%02x:%02x", static_cast<unsigned>((h >> 32) & 0xff),
                static_cast<unsigned>((h >> 24) & 0xff), static_cast<unsigned>((h >> 16) & 0xff),
                static_cast<unsigned>((h >> 8) & 0xff), static_cast<unsigned>(h & 0xff));
  return buf;
}

std::vector<std::string> qemu_argv(const MicroVmOptions& o) {
  const auto cmdline = "console=ttyS0 quiet pci=off panic=-1 reboot=t tsc_early_khz=" + std::to_string(host_tsc_khz());
  std::vector<std::string> argv = {o.qemu, "-M", "microvm", "-m", std::to_string(o.memory_mib) + "M",
                                   "-smp", std::to_string(std::max(1, o.cpus)),
                                   "-no-reboot", "-nodefaults", "-no-user-config", "-display", "none",
                                   "-serial", "file:" + o.console_path, "-kernel", o.kernel, "-initrd", o.initramfs,
                                   "-append", cmdline};
  if (o.kvm) argv.insert(argv.end(), {"-enable-kvm", "-cpu", "host"});
  else argv.insert(argv.end(), {"-accel", "tcg", "-cpu", "max"});
  // More 16550 ports at the legacy addresses, which the guest's 8250 driver probes as ttyS1 and ttyS2.
  auto port = [&](const std::string& id, const std::string& chardev, const char* iobase, const char* irq) {
    argv.insert(argv.end(), {"-chardev", chardev + ",id=" + id, "-device",
                             std::string("isa-serial,chardev=") + id + ",iobase=" + iobase + ",irq=" + irq});
  };
  if (!o.stdout_path.empty()) port("out", "file,path=" + o.stdout_path, "0x2f8", "3");
  if (!o.stderr_path.empty()) port("err", "file,path=" + o.stderr_path, "0x3e8", "4");
  // The control line: a virtio serial port (virtqueues, not a byte per VM exit), found by its name.
  if (!o.control_socket.empty())
    argv.insert(argv.end(), {"-device", "virtio-serial-device,max_ports=2", "-chardev",
                             "socket,id=ctl,path=" + o.control_socket + ",server=on,wait=off", "-device",
                             "virtserialport,chardev=ctl,name=platform.control"});
  if (o.tap_fd >= 0)
    argv.insert(argv.end(), {"-netdev", "tap,id=net0,fd=" + std::to_string(o.tap_fd), "-device",
                             "virtio-net-device,netdev=net0,mac=" + (o.mac.empty() ? mac_for(o.initramfs) : o.mac)});
  return argv;
}

std::optional<ExitStatus> parse_verdict(const std::string& console) {
  static const std::regex ended(R"(platform-init: (exited with status (\d+)|killed by signal (\d+)( \(out of memory\))?))");
  std::optional<ExitStatus> out;
  for (auto it = std::sregex_iterator(console.begin(), console.end(), ended); it != std::sregex_iterator(); ++it) {
    const auto& m = *it;
    ExitStatus e;
    if (m[2].matched) e.exit_code = std::stoi(m[2].str());
    else e.signal = std::stoi(m[3].str());
    e.oom = m[4].matched;
    out = e;
  }
  return out;
}

MicroVmResult run_microvm(const MicroVmOptions& o, std::chrono::milliseconds timeout) {
  const auto argv = qemu_argv(o);
  pid_t pid = ::fork();
  if (pid == 0) {
    exec_or_exit(argv);
  }
  MicroVmResult r;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      r.timed_out = true;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  r.console = read_text(o.console_path);
  r.exit = parse_verdict(r.console);
  return r;
}

}  // namespace platform::agent
