#include "agent/shim.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <sstream>

#include "agent/files.h"
#include "engine/exec.h"
#include "engine/json.h"

namespace platform::agent {
namespace fs = std::filesystem;

namespace {

// Runs runc with `args`; stdout and stderr to the given files (the container inherits them on create).
int run_runc(const ShimOptions& o, const std::vector<std::string>& args, const std::string& out_file,
             const std::string& err_file) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0640);
    int err = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0640);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    // JSON log lines: runc_start_failure() reads why a start failed from them (agent/sandbox.h).
    std::vector<std::string> argv = {o.runc, "--root", o.root, "--log", (fs::path(o.dir) / "runc.log").string(),
                                     "--log-format", "json"};
    argv.insert(argv.end(), args.begin(), args.end());
    exec_or_exit(argv);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

}  // namespace

int run_shim(const ShimOptions& o) {
  const fs::path d = o.dir;
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);  // the container's process is reparented to us when runc exits
  write_atomically(d / "shim.pid", std::to_string(::getpid()));
  const auto runc_log = (d / "runc.log").string();
  if (run_runc(o, {"create", "--bundle", o.dir, "--pid-file", (d / "pid").string(), o.id},
               (d / "stdout.log").string(), (d / "stderr.log").string()) != 0) {
    write_atomically(d / "shim.state", "failed create: " + read_text(runc_log).substr(0, 4000));
    return 1;
  }
  const auto pid = static_cast<pid_t>(std::atol(read_text(d / "pid").c_str()));
  if (run_runc(o, {"start", o.id}, runc_log, runc_log) != 0 || pid <= 0) {
    write_atomically(d / "shim.state", "failed start: " + read_text(runc_log).substr(0, 4000));
    run_runc(o, {"delete", "--force", o.id}, runc_log, runc_log);
    return 1;
  }
  write_atomically(d / "shim.state", "running " + std::to_string(pid));
  // Reap everything reparented to us until the container's own process is the one that ended.
  int status = 0;
  for (;;) {
    int s = 0;
    pid_t got = ::waitpid(-1, &s, 0);
    if (got == pid) {
      status = s;
      break;
    }
    if (got < 0 && errno == ECHILD) {
      status = -1;
      break;
    }
  }
  Json exit = {{"exit_code", status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1},
               {"signal", status >= 0 && WIFSIGNALED(status) ? WTERMSIG(status) : 0},
               {"oom", false},
               {"at", static_cast<std::int64_t>(std::time(nullptr))}};
  // The cgroup's OOM-kill counter, read before runc deletes the cgroup.
  const std::string cgroup = fs::exists("/sys/fs/cgroup/memory") ? "/sys/fs/cgroup/memory/platform/" + o.id
                                                                  : "/sys/fs/cgroup/platform/" + o.id;
  for (const char* file : {"memory.oom_control", "memory.events"}) {
    std::istringstream lines(read_text(fs::path(cgroup) / file));
    std::string key;
    long value = 0;
    while (lines >> key >> value)
      if (key == "oom_kill" && value > 0) exit["oom"] = true;
  }
  run_runc(o, {"delete", "--force", o.id}, runc_log, runc_log);
  write_atomically(d / "exit.json", exit.dump());
  write_atomically(d / "shim.state", "exited");
  return 0;
}

}  // namespace platform::agent
