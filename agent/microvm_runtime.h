#pragma once
// The microvm runtime (docs/agent.md#microvms): each run is a QEMU microVM of its own, booted from an
// initramfs of the image's rootfs with platform-init as PID 1, under a detached shim (agent/vm_shim.h)
// that gives it a private network namespace and records how it ended. The process's stdout and stderr
// are serial ports written to the run's log files; the memory limit is a cgroup in the guest (the VM
// gets that much plus room for its kernel and the unpacked image), so an OOM kill is seen and reported;
// stop sends SIGTERM over the control line, then kills the VM after the grace period; exec commands
// (health checks and `platform exec`) run through the same line, many at once (agent/vm_control.h).
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "agent/microvm.h"
#include "agent/runtime.h"

namespace platform::agent {

class VmControl;

class MicroVmRuntime final : public Runtime {
 public:
  // Memory a VM takes besides the instance's own limit (its kernel, platform-init, page tables); the
  // host report gives it to the scheduler, which counts it for every instance placed here.
  static constexpr std::int64_t kGuestOverheadMib = 96;

  struct Options {
    std::string state_dir;  // one folder per run
    std::string shim;       // the platform-agent binary (`platform-agent vm-shim`)
    std::string qemu = "/usr/bin/qemu-system-x86_64";
    GuestKit guest;
    bool kvm = false;       // only where KVM really runs guests
  };
  explicit MicroVmRuntime(Options options);

  // Whether this host can run microVMs (QEMU, the guest kit, root and /dev/net/tun for the VM's
  // network), and why (not).
  static std::string probe(const Options& options, bool* ok);

  std::string name() const override { return "microvm"; }
  void start(const InstanceSpec& spec) override;
  std::optional<ExitStatus> wait(const std::string& id, std::chrono::milliseconds timeout) override;
  ExitStatus stop(const std::string& id, std::chrono::milliseconds grace) override;
  void destroy(const std::string& id) override;
  ExecResult exec(const std::string& id, const std::vector<std::string>& argv,
                  const std::map<std::string, std::string>& env, std::chrono::milliseconds timeout,
                  std::size_t max_output = kCheckOutput, const std::string& input = {}) const override;
  // Over the control line too (agent/vm_session.h): on a terminal in the guest with `tty`.
  std::unique_ptr<Session> open_session(const std::string& id, const std::vector<std::string>& argv,
                                        const std::map<std::string, std::string>& env, bool tty, int rows,
                                        int cols) const override;
  std::vector<std::string> present() const override;
  // QEMU's process (in the VM's network namespace) and the guest's address.
  std::optional<ProbeTarget> probe_target(const std::string& id) const override;
  std::string stdout_path(const std::string& id) const override;
  std::string stderr_path(const std::string& id) const override;
  std::string console_path(const std::string& id) const;

 private:
  std::string dir(const std::string& id) const;
  // Connects to the run's control line; -1 when the VM is not listening.
  int connect_control(const std::string& id) const;
  // The run's control line, shared by every caller (QEMU takes one client); connected on first use and
  // again after it broke; null when the VM is not listening.
  std::shared_ptr<VmControl> control(const std::string& id) const;

  Options o_;
  mutable std::mutex controls_mu_;
  mutable std::map<std::string, std::shared_ptr<VmControl>> controls_;
};

}  // namespace platform::agent
