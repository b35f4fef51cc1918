#pragma once
// The sandbox runtime: an instance as a runc container (OCI runtime spec) on an overlay of its image's
// root filesystem. Weaker isolation than a microVM (the host kernel is shared), for hosts that cannot
// run one. The process honours the image's entrypoint, cmd, env, workdir and user; the release's config
// comes in as env vars; the secrets file is mounted read-only at /run/platform/secrets; memory is a hard
// limit and an OOM kill is reported as such; stop sends SIGTERM, then SIGKILL after the grace period.
//
// Each instance has a shim (`platform-agent shim`, agent/shim.h): a small process, detached from the
// agent, that creates and starts the container, reaps its process as a child subreaper, reads the OOM
// counter before the container is deleted, and writes the exit status to the instance's folder. So a
// restarted agent adopts running instances and still learns how they ended.
#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/runtime.h"

namespace platform::agent {

class Sandbox final : public Runtime {
 public:
  // `state_dir` holds one folder per instance (bundle, overlay, logs, shim state); `shim` is the
  // platform-agent binary (run as `platform-agent shim`); `runc` the runtime binary.
  Sandbox(std::string state_dir, std::string shim, std::string runc = "/usr/sbin/runc");

  std::string name() const override { return "sandbox"; }
  // Creates and starts the container through its shim.
  void start(const InstanceSpec& spec) override;
  std::optional<ExitStatus> wait(const std::string& id, std::chrono::milliseconds timeout) override;
  ExitStatus stop(const std::string& id, std::chrono::milliseconds grace) override;
  void destroy(const std::string& id) override;
  // Through `runc exec` (its host pid is killed too on a timeout).
  ExecResult exec(const std::string& id, const std::vector<std::string>& argv,
                  const std::map<std::string, std::string>& env, std::chrono::milliseconds timeout,
                  std::size_t max_output = kCheckOutput, const std::string& input = {}) const override;
  // Through `runc exec` (with --tty on a terminal of our own, whose master the session relays).
  std::unique_ptr<Session> open_session(const std::string& id, const std::vector<std::string>& argv,
                                        const std::map<std::string, std::string>& env, bool tty, int rows,
                                        int cols) const override;
  std::vector<std::string> present() const override;
  // The container's process: probes connect to 127.0.0.1 inside its network namespace.
  std::optional<ProbeTarget> probe_target(const std::string& id) const override;
  std::string stdout_path(const std::string& id) const override;
  std::string stderr_path(const std::string& id) const override;

  // Instances whose shim still runs.
  std::vector<std::string> running() const;
  // The instance's process id on the host while it runs.
  std::optional<pid_t> pid(const std::string& id) const;
  // Why this host can run sandboxes, or why not (runc missing, not root ...).
  static std::string probe(const std::string& runc, bool* ok);

 private:
  std::string dir(const std::string& id) const;
  void kill(const std::string& id, const char* signal) const;

  std::string state_dir_, shim_, runc_;
};

// What `runc exec` logged when it exited 255 (its log written with `--log FILE --log-format json`).
// When it could not start the command: "cannot run CMD: why" and the shell's status for it, 127 when
// it is not there, 126 when it is there but cannot be run (`command_missing` set). Another error of
// runc's: "runc: its message", status 255. nullopt when the log holds no error.
struct StartFailure {
  std::string why;
  int exit_code = 255;
  bool command_missing = false;
};
std::optional<StartFailure> runc_start_failure(const std::string& log_file);

}  // namespace platform::agent
