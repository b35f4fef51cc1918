#pragma once
// The microvm runtime's core (docs/agent.md#microvm): an initramfs holding the image's root filesystem
// and platform-init (PID 1), booted by QEMU `-M microvm` with Debian's cloud kernel; KVM when it really
// runs guests, TCG otherwise. The console (ttyS0) is the instance's output; platform-init prints how
// the process ended and powers the VM off, so QEMU's exit ends the run.
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace platform::agent {

struct GuestProcess {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string workdir = "/";
  unsigned uid = 0, gid = 0;
};

// Writes a cpio (newc) initramfs: everything under `rootfs`, `init` as /init, and /platform/run.
void build_initramfs(const std::string& rootfs, const std::string& init, const GuestProcess& process,
                     const std::string& out_path);

struct MicroVmResult {
  std::optional<int> exit_code;  // as platform-init reported it; nullopt when it never said
  bool timed_out = false;
  std::string console;           // everything the VM wrote on its console
};

struct MicroVmOptions {
  std::string qemu = "/usr/bin/qemu-system-x86_64";
  std::string kernel;            // vmlinuz
  std::string initramfs;
  std::int64_t memory_mib = 256;
  bool kvm = false;              // only where KVM really runs guests (agent/host.h says)
  std::string console_path;      // where the console output is written
  std::chrono::milliseconds timeout{60000};
};

// Boots the VM and waits for it to end (or kills it after the timeout).
MicroVmResult run_microvm(const MicroVmOptions& options);

}  // namespace platform::agent
