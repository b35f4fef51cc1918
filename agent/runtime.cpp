#include "agent/runtime.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "agent/files.h"
#include "engine/error.h"
#include "engine/exec.h"

namespace platform::agent {

std::unique_ptr<Session> Runtime::open_session(const std::string&, const std::vector<std::string>&,
                                               const std::map<std::string, std::string>&, bool, int, int) const {
  throw PlatformError(ErrorCode::not_supported, "interactive sessions do not run in " + name() + " instances yet",
                      "Run one command at a time with `platform exec` (without -i/-t); --stdin sends it input.");
}

std::string ExitStatus::describe() const {
  if (oom) return "killed for running out of memory (OOM)";
  if (signal) return fmt::format("killed by signal {} ({})", signal, ::strsignal(signal));
  return fmt::format("exited with status {}", exit_code);
}

bool valid_run_id(const std::string& id) {
  return !id.empty() && id.size() <= 128 && id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") == std::string::npos;
}

namespace shim_files {
namespace fs = std::filesystem;

void check_new_run(const std::string& id, const std::string& dir) {
  if (!valid_run_id(id))
    throw PlatformError(ErrorCode::invalid_request, "invalid instance id \"" + id.substr(0, 80) + "\"",
                        "Instance ids are lowercase letters, digits, '_' and '-'.");
  if (fs::exists(fs::path(dir) / "shim.state"))
    throw PlatformError(ErrorCode::precondition_failed, "instance " + id + " was already started on this host",
                        "Instance ids are never reused; destroy the old one first.");
}

void spawn_detached(const std::vector<std::string>& argv, const std::string& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    if (::fork() != 0) ::_exit(0);
    int in = ::open("/dev/null", O_RDWR);
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0640);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    exec_or_exit(argv);
  }
  ::waitpid(pid, nullptr, 0);
}

void await_started(const std::string& dir, const std::string& what, const std::string& see, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    auto state = read_text(fs::path(dir) / "shim.state");
    if (state.rfind("running", 0) == 0 || state.rfind("exited", 0) == 0) return;
    if (state.rfind("failed", 0) == 0) {
      auto why = state.substr(7, 2000);  // one line: it becomes an event's reason
      for (auto& c : why)
        if (c == '\n' || c == '\r') c = ' ';
      while (!why.empty() && why.back() == ' ') why.pop_back();
      throw PlatformError(ErrorCode::internal, what + ": " + why, "See " + see + ".");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  throw PlatformError(ErrorCode::internal, what + ": its shim did not report within " + std::to_string(limit.count() / 1000) + " s",
                      "See " + (fs::path(dir) / "shim.log").string() + ".");
}

std::optional<ExitStatus> read_exit(const std::string& dir) {
  auto doc = Json::parse(read_text(fs::path(dir) / "exit.json"), nullptr, false);
  if (!doc.is_object()) return std::nullopt;
  ExitStatus out;
  out.exit_code = doc.value("exit_code", -1);
  out.signal = doc.value("signal", 0);
  out.oom = doc.value("oom", false);
  return out;
}

bool shim_alive(const std::string& dir) {
  auto pid = static_cast<pid_t>(std::atol(read_text(fs::path(dir) / "shim.pid").c_str()));
  return pid > 0 && ::kill(pid, 0) == 0;
}

std::optional<ExitStatus> wait_exit(const std::string& dir, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int i = 0;; ++i) {
    if (auto e = read_exit(dir)) return e;
    // Checked now and then: a shim killed under us never writes exit.json.
    if (i % 50 == 0 && !shim_alive(dir) && !read_exit(dir)) return ExitStatus{-1, SIGKILL, false};
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::optional<pid_t> running_pid(const std::string& dir) {
  // The shim writes exit.json before it changes shim.state: once ended, never "running".
  if (read_exit(dir)) return std::nullopt;
  auto state = read_text(fs::path(dir) / "shim.state");
  if (state.rfind("running ", 0) != 0) return std::nullopt;
  auto p = static_cast<pid_t>(std::atol(state.c_str() + 8));
  if (p <= 0) return std::nullopt;
  return p;
}

}  // namespace shim_files

}  // namespace platform::agent
