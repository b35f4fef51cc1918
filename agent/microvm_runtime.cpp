#include "agent/microvm_runtime.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "agent/files.h"
#include "agent/run_network.h"
#include "agent/vm_control.h"
#include "agent/vm_session.h"
#include "agent/vm_shim.h"
#include "engine/error.h"

namespace platform::agent {
namespace fs = std::filesystem;
using std::chrono::milliseconds;

namespace {

std::int64_t tree_mib(const std::string& root) {
  std::uintmax_t bytes = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); it != fs::recursive_directory_iterator(); it.increment(ec))
    if (!ec && it->is_regular_file(ec) && !it->is_symlink(ec)) bytes += it->file_size(ec);
  return static_cast<std::int64_t>(bytes / (1024 * 1024)) + 1;
}

}  // namespace

MicroVmRuntime::MicroVmRuntime(Options options) : o_(std::move(options)) {
  fs::create_directories(fs::path(o_.state_dir) / "instances");
}

std::string MicroVmRuntime::probe(const Options& o, bool* ok) {
  *ok = false;
  if (::access(o.qemu.c_str(), X_OK) != 0) return "QEMU is not installed (apt-get install qemu-system-x86)";
  if (auto missing = o.guest.missing(); !missing.empty()) return missing;
  if (::geteuid() != 0) return "the agent is not root (each VM gets a network namespace and a tap device)";
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) return "/dev/net/tun is not there (the VMs' tap devices need it)";
  *ok = true;
  return fmt::format("QEMU -M microvm at {} with {} ({})", o.qemu, o.guest.kernel,
                     o.kvm ? "KVM" : "TCG emulation: no usable KVM");
}

std::string MicroVmRuntime::dir(const std::string& id) const { return (fs::path(o_.state_dir) / "instances" / id).string(); }
std::string MicroVmRuntime::stdout_path(const std::string& id) const { return dir(id) + "/stdout.log"; }
std::string MicroVmRuntime::stderr_path(const std::string& id) const { return dir(id) + "/stderr.log"; }
std::string MicroVmRuntime::console_path(const std::string& id) const { return dir(id) + "/console.log"; }

void MicroVmRuntime::start(const InstanceSpec& spec) {
  shim_files::check_new_run(spec.id, dir(spec.id));
  const fs::path d = dir(spec.id);
  fs::create_directories(d);
  ::chmod(d.c_str(), 0700);  // the initramfs holds the secrets file
  GuestBoot boot;
  boot.process = resolve_process(spec);
  boot.memory_mib = spec.memory_mib;
  boot.guest_cidr = fmt::format("{}/{}", kVmGuestAddress, kVmPrefix);
  boot.gateway = kVmHostAddress;
  boot.instance_address = spec.address;
  boot.hostname = spec.id.substr(0, 63);
  boot.modules = o_.guest.modules();
  boot.secrets_file = spec.secrets_file;
  boot.serial_ports = true;
  build_initramfs(spec.rootfs, o_.guest.init, boot, (d / "initramfs.cpio").string());

  MicroVmOptions vm;
  vm.qemu = o_.qemu;
  vm.kernel = o_.guest.kernel;
  vm.initramfs = (d / "initramfs.cpio").string();
  // The initramfs is unpacked into the guest's memory (its copy is freed after), beside the process.
  vm.memory_mib = spec.memory_mib + MicroVmRuntime::kGuestOverheadMib + 2 * tree_mib(spec.rootfs);
  vm.cpus = std::max(1, static_cast<int>(std::ceil(spec.cpu)));
  vm.kvm = o_.kvm;
  vm.console_path = console_path(spec.id);
  vm.stdout_path = stdout_path(spec.id);
  vm.stderr_path = stderr_path(spec.id);
  vm.control_socket = "control.sock";  // the shim runs QEMU in the run's folder
  vm.tap_fd = 3;  // the shim's tap device
  vm.mac = mac_for(spec.id);
  Json shim = {{"argv", qemu_argv(vm)}, {"network", true}};
  if (!spec.address.empty()) {
    // The run's namespace, reached from the host at the instance's address; the shim adds the tap.
    shim["netns"] = create_run_network(spec.id, spec.address, RunNetworkKind::routed);
    shim["address"] = spec.address;
  }
  write_atomically(d / "vm.json", shim.dump());
  shim_files::spawn_detached({o_.shim, "vm-shim", "--dir", d.string()}, (d / "shim.log").string());
  shim_files::await_started(d.string(), "the microVM of instance " + spec.id + " could not start",
                            (d / "qemu.log").string(), std::chrono::seconds(30));
}

std::optional<ExitStatus> MicroVmRuntime::wait(const std::string& id, milliseconds timeout) {
  if (!fs::exists(fs::path(dir(id)) / "shim.state"))
    throw PlatformError(ErrorCode::not_found, "instance " + id + " is not on this host");
  return shim_files::wait_exit(dir(id), timeout);
}

int MicroVmRuntime::connect_control(const std::string& id) const {
  // Through an fd of the run's folder: the socket's full path may be longer than a socket path can be.
  int folder = ::open(dir(id).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (folder < 0) return -1;
  const auto path = fmt::format("/proc/self/fd/{}/control.sock", folder);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    fd = -1;
  }
  ::close(folder);
  return fd;
}

ExitStatus MicroVmRuntime::stop(const std::string& id, milliseconds grace) {
  if (auto s = wait(id, milliseconds(0))) return *s;
  // SIGTERM through platform-init.
  if (auto line = control(id); line && line->send("signal 15\n"))
    if (auto s = wait(id, grace)) return *s;
  if (auto qemu = shim_files::running_pid(dir(id))) ::kill(*qemu, SIGKILL);
  if (auto s = wait(id, std::chrono::seconds(10))) return *s;
  throw PlatformError(ErrorCode::internal, "the microVM of instance " + id + " did not end after SIGKILL",
                      "See " + dir(id) + "/shim.log.");
}

std::shared_ptr<VmControl> MicroVmRuntime::control(const std::string& id) const {
  std::lock_guard lock(controls_mu_);
  auto& c = controls_[id];
  if (c && !c->broken()) return c;
  c.reset();  // a broken line is let go (its last users still hold it) and dialled afresh
  const int fd = connect_control(id);
  if (fd < 0) {
    controls_.erase(id);
    return nullptr;
  }
  c = std::make_shared<VmControl>(fd);
  return c;
}

ExecResult MicroVmRuntime::exec(const std::string& id, const std::vector<std::string>& argv,
                                const std::map<std::string, std::string>& env, milliseconds timeout,
                                std::size_t max_output, const std::string& input) const {
  ExecResult out;
  if (!valid_run_id(id) || argv.empty()) {
    out.output = "nothing to run";
    return out;
  }
  auto line = control(id);
  if (!line) return out.output = "the VM's control line is not open (is it running?)", out;
  return line->run(argv, env, timeout, max_output, input);
}

std::unique_ptr<Session> MicroVmRuntime::open_session(const std::string& id, const std::vector<std::string>& argv,
                                                      const std::map<std::string, std::string>& env, bool tty,
                                                      int rows, int cols) const {
  if (!valid_run_id(id) || argv.empty()) throw PlatformError(ErrorCode::invalid_request, "nothing to run", "");
  return open_vm_session(control(id), argv, env, tty, rows, cols);
}

std::vector<std::string> MicroVmRuntime::present() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(o_.state_dir) / "instances", ec))
    if (fs::exists(e.path() / "shim.state")) out.push_back(e.path().filename().string());
  return out;
}

std::optional<ProbeTarget> MicroVmRuntime::probe_target(const std::string& id) const {
  auto qemu = shim_files::running_pid(dir(id));
  if (!qemu) return std::nullopt;
  return ProbeTarget{*qemu, kVmGuestAddress};
}

void MicroVmRuntime::destroy(const std::string& id) {
  if (!valid_run_id(id)) return;
  {
    std::lock_guard lock(controls_mu_);
    controls_.erase(id);
  }
  // A VM still running (a start that never reported): its shim is alive, so the pid is still QEMU.
  if (auto qemu = shim_files::running_pid(dir(id)); qemu && shim_files::shim_alive(dir(id)) && !shim_files::read_exit(dir(id)))
    ::kill(*qemu, SIGKILL);
  destroy_run_network(id);
  std::error_code ec;
  fs::remove_all(dir(id), ec);
}

}  // namespace platform::agent
