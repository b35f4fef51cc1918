#pragma once
// The per-run shim of the microvm runtime (`platform-agent vm-shim --dir D`): detached from the agent,
// it gives the VM a network namespace with a tap device (host side 10.255.255.1/30, the guest
// 10.255.255.2/30): its own, or, when vm.json names "netns" and "address", the run's namespace that the
// agent made (agent/run_network.h, routed), where it routes the instance's address on to the guest
// (which holds it beside 10.255.255.2) and answers ARP for it on the uplink. It runs QEMU (the command line in D/vm.json) as its child with the tap's fd, and
// when QEMU exits records how the process ended (platform-init's verdict on the console, else "killed")
// so a restarted agent still learns it.
//
// Files in D, each written by rename: shim.pid; shim.state "running <qemu pid>", "failed <why>", then
// "exited"; exit.json {"exit_code", "signal", "oom", "at"}; qemu.log (QEMU's own stderr).
#include <string>

namespace platform::agent {

inline constexpr const char* kVmHostAddress = "10.255.255.1";
inline constexpr const char* kVmGuestAddress = "10.255.255.2";
inline constexpr int kVmPrefix = 30;

// Returns the shim's exit code (0 once the exit status is recorded).
int run_vm_shim(const std::string& dir);

}  // namespace platform::agent
