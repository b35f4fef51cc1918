#pragma once
// A runtime runs an instance's process from an image's root filesystem (docs/agent.md#runtimes). Two
// drivers implement it: the microvm runtime (agent/microvm_runtime.h: a QEMU microVM per run, with its
// own kernel) and the sandbox runtime (agent/sandbox.h: a runc container on the host's kernel). Both
// honour the image's entrypoint, cmd, env, workdir and user, add the release's config as env vars, mount
// the secrets file read-only at /run/platform/secrets, enforce the memory limit and report an OOM kill as
// such, and stop with SIGTERM, then SIGKILL after the grace period.
//
// Each run lives in a folder of its own with a detached shim, so the agent may restart meanwhile and
// adopt what still runs; the exit status is kept on disk until destroy().
#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/json.h"

namespace platform::agent {

struct InstanceSpec {
  std::string id;                               // the run's id: [a-z0-9_-]
  std::string rootfs;                           // the image's rootfs (never written)
  Json image_config = Json::object();           // Entrypoint, Cmd, Env, WorkingDir, User
  std::vector<std::string> command;             // the manifest's command; empty: the image's
  std::map<std::string, std::string> env;       // the release's config (over the image's Env)
  std::string secrets_file;                     // host path; mounted read-only at /run/platform/secrets
  std::int64_t memory_mib = 256;
  double cpu = 0.25;
  // Its private IPv4 address (from the control plane's IPAM), routed from the host to the run's network
  // namespace (sandbox: a veth pair; microvm: the tap), where the edge reaches its ports. "": loopback only.
  std::string address;
};

struct ExitStatus {
  int exit_code = -1;  // when it exited
  int signal = 0;      // when a signal ended it
  bool oom = false;    // the kernel killed it for exceeding its memory limit
  std::string describe() const;  // "exited with status 3", "killed by signal 9 (Killed)", "... (OOM)"
};

struct ExecResult {
  int exit_code = -1;
  bool timed_out = false;
  std::string output;      // stdout and stderr as they came, the first max_output bytes
  bool truncated = false;  // it wrote more than that
};

constexpr std::size_t kCheckOutput = 4096;  // what an exec health check keeps of its command's output

// Where a tcp or http health probe connects: from inside the network namespace of process `pid`, to
// `address` (the instance itself for a sandbox, the VM's guest address for a microVM).
struct ProbeTarget {
  pid_t pid = 0;
  std::string address = "127.0.0.1";
};

// An interactive command in a running instance (`platform exec -i`, `-it`): its input and output go
// through one descriptor, a terminal's master side with a tty, a socket without.
class Session {
 public:
  virtual ~Session() = default;
  virtual int fd() const = 0;    // read its output from it, write its input to it
  virtual void end_input() = 0;  // the end of its input (on a terminal: Ctrl-D, as a user would type it)
  virtual void resize(int rows, int cols) = 0;
  // Its exit status once it ended (-1: killed by a signal); nullopt while it runs and `timeout` has not passed.
  virtual std::optional<int> wait(std::chrono::milliseconds timeout) = 0;
  virtual void kill() = 0;  // SIGKILL to the command and whatever relays it
  // Once wait() has its status: why the command never ran, when its output does not already say so
  // (the session adds it to the output); "" otherwise.
  virtual std::string start_failure() const { return ""; }
};

class Runtime {
 public:
  virtual ~Runtime() = default;
  virtual std::string name() const = 0;  // "microvm" or "sandbox"

  // Starts the run; returns once it runs (or throws why not). stdout and stderr go to its log files.
  virtual void start(const InstanceSpec& spec) = 0;
  // The exit status once the process has ended; nullopt while it runs and `timeout` has not passed.
  virtual std::optional<ExitStatus> wait(const std::string& id, std::chrono::milliseconds timeout) = 0;
  // SIGTERM to the process, then SIGKILL after `grace`; returns how it ended.
  virtual ExitStatus stop(const std::string& id, std::chrono::milliseconds grace) = 0;
  // Removes the run's folder (after it ended).
  virtual void destroy(const std::string& id) = 0;
  // Runs `argv` inside the running instance, as its user, with `env` added; killed after `timeout`
  // (then exit_code is -1 and timed_out is set); `input` is its stdin (none: /dev/null). For exec health
  // checks and `platform exec`. exit_code -1 without timed_out: it never ran, and `output` says why.
  virtual ExecResult exec(const std::string& id, const std::vector<std::string>& argv,
                          const std::map<std::string, std::string>& env, std::chrono::milliseconds timeout,
                          std::size_t max_output = kCheckOutput, const std::string& input = {}) const = 0;
  // Starts `argv` inside the running instance as an interactive session, as its user, with `env` added,
  // on a terminal of rows x cols with `tty`. Throws PlatformError when it cannot (not_supported for a
  // runtime without sessions).
  virtual std::unique_ptr<Session> open_session(const std::string& id, const std::vector<std::string>& argv,
                                                const std::map<std::string, std::string>& env, bool tty, int rows,
                                                int cols) const;
  // Every run with a folder here, running or ended (not yet destroyed): what to adopt after a restart.
  virtual std::vector<std::string> present() const = 0;
  // Where health probes reach the run while it runs.
  virtual std::optional<ProbeTarget> probe_target(const std::string& id) const = 0;

  virtual std::string stdout_path(const std::string& id) const = 0;
  virtual std::string stderr_path(const std::string& id) const = 0;
};

// Run ids are [a-z0-9_-], at most 128 characters (folder and container names).
bool valid_run_id(const std::string& id);

// What both runtimes' shims share (agent/shim.h, agent/vm_shim.h): a run's folder holds shim.pid,
// shim.state ("running <pid>", "failed <why>", "exited") and exit.json once it ended.
namespace shim_files {
// Throws PlatformError when `id` is not a valid run id, or a run of that id was already started in `dir`.
void check_new_run(const std::string& id, const std::string& dir);
// Starts argv detached from us (its own session, reparented to init), stdout and stderr to `log`, so it
// outlives an agent restart.
void spawn_detached(const std::vector<std::string>& argv, const std::string& log);
// Waits until the shim reports "running ..." or "exited" (returns), or "failed <why>" (throws `what` and
// why, with a hint naming `see`), for at most `limit`.
void await_started(const std::string& dir, const std::string& what, const std::string& see, std::chrono::milliseconds limit);
std::optional<ExitStatus> read_exit(const std::string& dir);  // nullopt while it runs
// The exit status once written; nullopt after `timeout`. A shim that died without writing one (killed)
// reads as killed by SIGKILL.
std::optional<ExitStatus> wait_exit(const std::string& dir, std::chrono::milliseconds timeout);
std::optional<pid_t> running_pid(const std::string& dir);  // the pid in "running <pid>"; nullopt once ended
bool shim_alive(const std::string& dir);
}  // namespace shim_files

}  // namespace platform::agent
