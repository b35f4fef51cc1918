#pragma once
// The microvm runtime's core (docs/agent.md#microvms): an initramfs holding the image's root filesystem,
// platform-init (PID 1) and the virtio modules, booted by QEMU `-M microvm` with Debian's cloud kernel;
// KVM when it really runs guests, TCG otherwise. Serial ports carry the console (ttyS0: the kernel and
// platform-init, which prints how the process ended), the process's stdout (ttyS1) and stderr (ttyS2),
// and a virtio serial port the agent's control line (a unix socket on the host: signals and exec commands).
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "agent/process_spec.h"
#include "agent/runtime.h"

namespace platform::agent {

// What the guest boots besides the image: a kernel, platform-init and kernel modules.
struct GuestKit {
  std::string kernel;       // vmlinuz
  std::string init;         // the static platform-init binary
  std::string modules_dir;  // *.ko and `load-order` (one file name per line), from scripts/setup
  // The modules to load, in order (host paths); empty when the folder has no load-order.
  std::vector<std::string> modules() const;
  // Why this kit cannot boot (a missing file, with the command that provides it); "" when it can.
  std::string missing() const;
};

struct GuestBoot {
  ProcessSpec process;
  std::int64_t memory_mib = 0;          // the process's memory limit (a cgroup in the guest); 0: none
  std::string guest_cidr, gateway;      // eth0's address and default route; empty: no network
  std::string instance_address;         // the instance's IPAM address, held beside guest_cidr; empty: none
  std::string hostname;                 // the guest's host name (the run id, as in a sandbox); empty: none
  std::vector<std::string> modules;     // host paths, loaded in this order
  std::string secrets_file;             // host path; the guest mounts it read-only at /run/platform/secrets
  bool serial_ports = false;            // the VM has ttyS1-2 (stdout, stderr); else all on the console
};

// Writes a cpio (newc) initramfs: everything under `rootfs`, `init` as /init, and /platform (the run
// file, the modules, the secrets file).
void build_initramfs(const std::string& rootfs, const std::string& init, const GuestBoot& boot,
                     const std::string& out_path);

struct MicroVmOptions {
  std::string qemu = "/usr/bin/qemu-system-x86_64";
  std::string kernel;            // vmlinuz
  std::string initramfs;
  std::int64_t memory_mib = 256;  // the VM's memory
  int cpus = 1;
  bool kvm = false;              // only where KVM really runs guests (agent/host.h says)
  std::string console_path;      // ttyS0
  std::string stdout_path, stderr_path;  // ttyS1, ttyS2; empty: the process writes on the console
  // The control line, a virtio serial port named "platform.control" (agent/init/control_line.h), as a
  // unix socket QEMU listens on (relative to QEMU's working directory: socket paths are limited to 107
  // bytes); empty: none
  std::string control_socket;
  int tap_fd = -1;               // a tap device's fd QEMU inherits: virtio-net; -1: no network
  std::string mac;               // the NIC's address, always passed (DESIGN.md section 13); empty: from the initramfs path
};

// A locally administered unicast MAC address derived from `seed` (e.g. the run id): 02:xx:xx:xx:xx:xx.
std::string mac_for(const std::string& seed);

// QEMU's command line for these options.
std::vector<std::string> qemu_argv(const MicroVmOptions& options);

// How the process ended, from the console's last "platform-init: ..." verdict; nullopt when it never said.
std::optional<ExitStatus> parse_verdict(const std::string& console);

struct MicroVmResult {
  std::optional<ExitStatus> exit;  // as platform-init reported it
  bool timed_out = false;
  std::string console;             // everything on the console
};

// Boots the VM in the foreground and waits for it to end (or kills it after `timeout`).
MicroVmResult run_microvm(const MicroVmOptions& options, std::chrono::milliseconds timeout);

}  // namespace platform::agent
