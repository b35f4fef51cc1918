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

#include "engine/json.h"

namespace platform::agent {

struct InstanceSpec {
  std::string id;                               // also the container's name: [a-z0-9_-]
  std::string rootfs;                           // the image's rootfs (never written)
  Json image_config = Json::object();           // Entrypoint, Cmd, Env, WorkingDir, User
  std::vector<std::string> command;             // the manifest's command; empty: the image's
  std::map<std::string, std::string> env;       // the release's config (over the image's Env)
  std::string secrets_file;                     // host path; mounted read-only at /run/platform/secrets
  std::int64_t memory_mib = 256;
  double cpu = 0.25;
};

struct ExitStatus {
  int exit_code = -1;  // when it exited
  int signal = 0;      // when a signal ended it
  bool oom = false;    // the kernel killed it for exceeding its memory limit
  std::string describe() const;  // "exited with status 3", "killed by signal 9 (out of memory: limit 64 MiB)"
};

class Sandbox {
 public:
  // `state_dir` holds one folder per instance (bundle, overlay, logs, shim state); `shim` is the
  // platform-agent binary (run as `platform-agent shim`); `runc` the runtime binary.
  Sandbox(std::string state_dir, std::string shim, std::string runc = "/usr/sbin/runc");

  // Creates and starts the container through its shim; returns once it runs (or throws why not).
  // stdout and stderr go to the instance's log files.
  void start(const InstanceSpec& spec);
  // The exit status once the process has ended; nullopt while it runs and `timeout` has not passed.
  std::optional<ExitStatus> wait(const std::string& id, std::chrono::milliseconds timeout);
  // SIGTERM, then SIGKILL after `grace`; returns how it ended.
  ExitStatus stop(const std::string& id, std::chrono::milliseconds grace);
  // Removes the instance's folder (after it ended).
  void destroy(const std::string& id);
  // Runs `argv` inside the running instance (runc exec, as the instance's user, with `env` added): its
  // exit status and the first 4 KiB of its output; killed after `timeout` (then exit_code is -1 and
  // `timed_out` is set). For exec health checks.
  struct ExecResult {
    int exit_code = -1;
    bool timed_out = false;
    std::string output;
  };
  ExecResult exec(const std::string& id, const std::vector<std::string>& argv,
                  const std::map<std::string, std::string>& env, std::chrono::milliseconds timeout) const;
  // Instances whose shim still runs (after an agent restart: what to adopt).
  std::vector<std::string> running() const;
  // Every instance with a folder here, running or ended (not yet destroyed).
  std::vector<std::string> present() const;
  // The instance's process id on the host while it runs (for health probes in its namespaces).
  std::optional<pid_t> pid(const std::string& id) const;

  std::string stdout_path(const std::string& id) const;
  std::string stderr_path(const std::string& id) const;
  // Why this host can run sandboxes, or why not (runc missing, not root ...).
  static std::string probe(const std::string& runc, bool* ok);

 private:
  std::string dir(const std::string& id) const;
  void kill(const std::string& id, const char* signal) const;

  std::string state_dir_, shim_, runc_;
};

}  // namespace platform::agent
