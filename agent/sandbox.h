#pragma once
// The sandbox runtime: an instance as a runc container (OCI runtime spec) on an overlay of its image's
// root filesystem. Weaker isolation than a microVM (the host kernel is shared), for hosts that cannot
// run one. The process honours the image's entrypoint, cmd, env, workdir and user; the release's config
// comes in as env vars; the secrets file is mounted read-only at /run/platform/secrets; memory is a hard
// limit and an OOM kill is reported as such; stop sends SIGTERM, then SIGKILL after the grace period.
//
// The process that creates containers becomes a child subreaper, so it reaps each container's process
// itself and learns its exact exit status.
#include <sys/types.h>

#include <chrono>
#include <map>
#include <mutex>
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
  // `state_dir` holds one folder per instance (bundle, overlay, logs); `runc` is the runtime binary.
  explicit Sandbox(std::string state_dir, std::string runc = "/usr/sbin/runc");
  ~Sandbox();

  // Creates and starts the container. stdout and stderr go to the instance's log files.
  void start(const InstanceSpec& spec);
  // The exit status once the process has exited (reaping it, reading the OOM counter, deleting the
  // container); nullopt while it runs and `timeout` has not passed.
  std::optional<ExitStatus> wait(const std::string& id, std::chrono::milliseconds timeout);
  // SIGTERM, then SIGKILL after `grace`; returns how it ended.
  ExitStatus stop(const std::string& id, std::chrono::milliseconds grace);
  // Removes the instance's folder (after it ended).
  void destroy(const std::string& id);

  std::string stdout_path(const std::string& id) const;
  std::string stderr_path(const std::string& id) const;
  // Why this host can run sandboxes, or why not (runc missing, not root ...).
  static std::string probe(const std::string& runc, bool* ok);

 private:
  struct Running {
    pid_t pid = -1;
    std::string cgroup_memory;  // the memory controller folder of its cgroup
    std::int64_t memory_mib = 0;
  };
  std::string dir(const std::string& id) const;
  int runc(const std::vector<std::string>& args, const std::string& log, std::chrono::seconds timeout) const;

  std::string state_dir_, runc_;
  std::mutex mu_;
  std::map<std::string, Running> running_;
};

}  // namespace platform::agent
