#include "agent/sandbox.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/files.h"
#include "agent/process_spec.h"
#include "agent/run_network.h"
#include "engine/error.h"
#include "engine/exec.h"

namespace platform::agent {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& hint = {}) {
  throw PlatformError(ErrorCode::internal, what, hint);
}

Json process_json(const InstanceSpec& s) {
  const auto p = resolve_process(s);
  Json envs = Json::array();
  for (const auto& [k, v] : p.env) envs.push_back(k + "=" + v);
  const Json caps = {"CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",   "CAP_FOWNER",           "CAP_MKNOD",
                     "CAP_NET_RAW", "CAP_SETGID",       "CAP_SETUID",   "CAP_SETFCAP",          "CAP_SETPCAP",
                     "CAP_KILL",    "CAP_SYS_CHROOT",   "CAP_AUDIT_WRITE", "CAP_NET_BIND_SERVICE"};
  return {{"terminal", false},
          {"user", {{"uid", p.uid}, {"gid", p.gid}}},
          {"args", p.argv},
          {"env", envs},
          {"cwd", p.workdir},
          {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
          {"noNewPrivileges", true}};
}

// `netns`: the path of the run's network namespace (agent/run_network.h); "": a new one of its own with
// loopback only.
Json config_json(const InstanceSpec& s, const fs::path& merged, const std::string& netns) {
  Json mounts = {
      {{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
      {{"destination", "/dev"}, {"type", "tmpfs"}, {"source", "tmpfs"},
       {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
      {{"destination", "/dev/pts"}, {"type", "devpts"}, {"source", "devpts"},
       {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}}},
      {{"destination", "/dev/shm"}, {"type", "tmpfs"}, {"source", "shm"},
       {"options", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}},
      {{"destination", "/dev/mqueue"}, {"type", "mqueue"}, {"source", "mqueue"}, {"options", {"nosuid", "noexec", "nodev"}}},
      {{"destination", "/sys"}, {"type", "sysfs"}, {"source", "sysfs"}, {"options", {"nosuid", "noexec", "nodev", "ro"}}}};
  if (!s.secrets_file.empty())
    mounts.push_back({{"destination", "/run/platform/secrets"}, {"type", "bind"}, {"source", s.secrets_file},
                      {"options", {"rbind", "ro", "nosuid", "nodev", "noexec"}}});
  const auto limit = s.memory_mib * 1024 * 1024;
  Json network = {{"type", "network"}};
  if (!netns.empty()) network["path"] = netns;
  return {{"ociVersion", "1.0.2"},
          {"process", process_json(s)},
          {"root", {{"path", merged.string()}, {"readonly", false}}},
          {"hostname", s.id.substr(0, 63)},
          {"mounts", mounts},
          {"linux",
           {{"namespaces", {{{"type", "pid"}}, network, {{"type", "ipc"}}, {{"type", "uts"}},
                            {{"type", "mount"}}}},
            {"cgroupsPath", "/platform/" + s.id},
            {"resources",
             {{"memory", {{"limit", limit}, {"swap", limit}}},
              {"cpu", {{"quota", static_cast<std::int64_t>(s.cpu * 100000)}, {"period", 100000}}},
              {"pids", {{"limit", 4096}}}}},
            {"maskedPaths", {"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                             "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"}},
            {"readonlyPaths", {"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}}}}};
}

}  // namespace

Sandbox::Sandbox(std::string state_dir, std::string shim, std::string runc)
    : state_dir_(std::move(state_dir)), shim_(std::move(shim)), runc_(std::move(runc)) {
  fs::create_directories(fs::path(state_dir_) / "runc");
  fs::create_directories(fs::path(state_dir_) / "instances");
}

std::string Sandbox::probe(const std::string& runc, bool* ok) {
  *ok = false;
  if (::access(runc.c_str(), X_OK) != 0) return "runc is not installed (apt-get install runc)";
  if (::geteuid() != 0) return "the agent is not root (runc needs it for namespaces and cgroups)";
  *ok = true;
  return "runc at " + runc;
}

std::string Sandbox::dir(const std::string& id) const { return (fs::path(state_dir_) / "instances" / id).string(); }
std::string Sandbox::stdout_path(const std::string& id) const { return dir(id) + "/stdout.log"; }
std::string Sandbox::stderr_path(const std::string& id) const { return dir(id) + "/stderr.log"; }

void Sandbox::start(const InstanceSpec& spec) {
  shim_files::check_new_run(spec.id, dir(spec.id));
  const fs::path d = dir(spec.id), merged = d / "rootfs";
  fs::create_directories(d / "upper");
  fs::create_directories(d / "work");
  fs::create_directories(merged);
  // The instance writes to its own upper layer; the image's rootfs stays as pulled.
  const auto opts = "lowerdir=" + spec.rootfs + ",upperdir=" + (d / "upper").string() + ",workdir=" + (d / "work").string();
  if (::mount("overlay", merged.c_str(), "overlay", 0, opts.c_str()) != 0 && errno != EBUSY)
    fail("cannot mount the instance's root filesystem: " + std::string(std::strerror(errno)),
         "The sandbox runtime needs root and overlayfs.");
  const auto netns = spec.address.empty() ? std::string() : create_run_network(spec.id, spec.address);
  {
    std::ofstream cfg(d / "config.json", std::ios::trunc);
    cfg << config_json(spec, merged, netns).dump(2);
  }
  shim_files::spawn_detached({shim_, "shim", "--dir", d.string(), "--id", spec.id, "--runc", runc_, "--root",
                              (fs::path(state_dir_) / "runc").string()},
                             (d / "shim.log").string());
  try {
    shim_files::await_started(d.string(), "runc could not start instance " + spec.id, (d / "runc.log").string(),
                              std::chrono::seconds(30));
  } catch (const PlatformError&) {
    // runc's log says why in one line: most often a command the image does not have.
    if (auto failed = runc_start_failure((d / "runc.log").string()))
      throw PlatformError(ErrorCode::internal, failed->why,
                          "Check the process's command in platform.toml and the image's entrypoint.");
    throw;
  }
}

std::optional<ExitStatus> Sandbox::wait(const std::string& id, std::chrono::milliseconds timeout) {
  if (!fs::exists(fs::path(dir(id)) / "shim.state"))
    throw PlatformError(ErrorCode::not_found, "instance " + id + " is not on this host");
  return shim_files::wait_exit(dir(id), timeout);
}

void Sandbox::kill(const std::string& id, const char* signal) const {
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    exec_or_exit({runc_, "--root", (fs::path(state_dir_) / "runc").string(), "kill", id, signal});
  }
  ::waitpid(pid, nullptr, 0);
}

ExitStatus Sandbox::stop(const std::string& id, std::chrono::milliseconds grace) {
  if (auto s = wait(id, std::chrono::milliseconds(0))) return *s;
  kill(id, "TERM");
  if (auto s = wait(id, grace)) return *s;
  kill(id, "KILL");
  if (auto s = wait(id, std::chrono::seconds(10))) return *s;
  fail("instance " + id + " did not end after SIGKILL", "See " + dir(id) + "/shim.log.");
}

std::vector<std::string> Sandbox::running() const {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(fs::path(state_dir_) / "instances")) {
    auto state = read_text(e.path() / "shim.state");
    if (state.rfind("running ", 0) != 0 || fs::exists(e.path() / "exit.json")) continue;
    auto shim_pid = static_cast<pid_t>(std::atol(read_text(e.path() / "shim.pid").c_str()));
    if (shim_pid > 0 && ::kill(shim_pid, 0) == 0) out.push_back(e.path().filename().string());
  }
  return out;
}

ExecResult Sandbox::exec(const std::string& id, const std::vector<std::string>& argv,
                                  const std::map<std::string, std::string>& env, std::chrono::milliseconds timeout,
                                  std::size_t max_output, const std::string& input) const {
  ExecResult out;
  if (!valid_run_id(id) || argv.empty()) {
    out.output = "nothing to run";
    return out;
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    out.output = std::string("pipe: ") + std::strerror(errno);
    return out;
  }
  // Its stdin, when it gets one: a socket, so that a command that exits without reading it costs us
  // EPIPE (MSG_NOSIGNAL), never SIGPIPE.
  int in[2] = {-1, -1};
  if (!input.empty() && ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    out.output = std::string("socketpair: ") + std::strerror(errno);
    return out;
  }
  // The command's host pid, to kill it too on a timeout (killing `runc exec` alone leaves it running).
  const auto pid_file = (fs::path(dir(id)) / fmt::format("exec-{}.pid", ::getpid() ^ static_cast<int>(::gettid()))).string();
  // runc's own messages go to a log of their own too: when it could not start the command, that says
  // why in a form we can read (on stderr it is one line among the command's output).
  const auto log_file = pid_file.substr(0, pid_file.size() - 4) + ".log";
  std::vector<std::string> args = {runc_, "--root", (fs::path(state_dir_) / "runc").string(), "--log", log_file,
                                   "--log-format", "json", "exec", "--pid-file", pid_file};
  for (const auto& [k, v] : env) {
    args.push_back("--env");
    args.push_back(k + "=" + v);
  }
  args.push_back(id);
  args.insert(args.end(), argv.begin(), argv.end());
  pid_t pid = ::fork();
  if (pid == 0) {
    const int input = in[0] >= 0 ? in[0] : ::open("/dev/null", O_RDONLY);
    if (input > 0) ::dup2(input, 0);
    if (input > 2) ::close(input);  // runc is handed 0, 1 and 2 only
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    exec_or_exit(args);
  }
  ::close(fds[1]);
  if (in[0] >= 0) {
    ::close(in[0]);
    ::fcntl(in[1], F_SETFL, O_NONBLOCK);
  }
  std::size_t sent = 0;
  auto end_input = [&] {
    if (in[1] >= 0) ::close(in[1]);  // its EOF
    in[1] = -1;
  };
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      out.timed_out = true;
      if (auto inner = std::atol(read_text(pid_file).c_str()); inner > 0) ::kill(static_cast<pid_t>(inner), SIGKILL);
      ::kill(pid, SIGKILL);
      break;
    }
    // Its output, and while some of the input is left, room to write it (-1 fds are ignored by poll).
    pollfd p[2] = {{fds[0], POLLIN, 0}, {in[1], POLLOUT, 0}};
    if (::poll(p, 2, static_cast<int>(left.count())) <= 0) continue;
    if (in[1] >= 0 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      auto w = ::send(in[1], input.data() + sent, input.size() - sent, MSG_NOSIGNAL);
      if (w > 0) sent += static_cast<std::size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || sent == input.size()) end_input();  // EPIPE: it stopped reading
    }
    if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    auto n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;  // the end of its output: it has exited (or closed its output)
    if (out.output.size() < max_output) out.output.append(buf, static_cast<std::size_t>(n));
    else out.truncated = true;
  }
  ::close(fds[0]);
  end_input();
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!out.timed_out && WIFEXITED(status)) out.exit_code = WEXITSTATUS(status);
  if (out.exit_code == 255)
    if (auto failed = runc_start_failure(log_file); failed && failed->command_missing) {
      out.output = failed->why + "\n";  // all there was is runc's line saying the same
      out.truncated = false;
      out.exit_code = failed->exit_code;
    }
  std::error_code ec;
  fs::remove(pid_file, ec);
  fs::remove(log_file, ec);
  if (out.output.size() > max_output) {
    out.output.resize(max_output);
    out.truncated = true;
  }
  return out;
}

std::optional<StartFailure> runc_start_failure(const std::string& log_file) {
  // runc 1.1: "exec failed: unable to start container process: exec: \"/nope\": stat /nope: no such
  // file or directory" (also "executable file not found in $PATH", "permission denied").
  static constexpr std::string_view kMarker = "unable to start container process: exec: \"";
  std::istringstream lines(read_text(log_file));
  std::string last_error;
  for (std::string line; std::getline(lines, line);) {
    Json entry;
    try {
      entry = Json::parse(line);
    } catch (const std::exception&) {
      continue;
    }
    const auto msg = entry.is_object() ? entry.value("msg", "") : "";
    if (entry.is_object() && entry.value("level", "") == "error") last_error = msg;
    const auto at = msg.find(kMarker);
    if (at == std::string::npos) continue;
    const auto cmd_at = at + kMarker.size(), cmd_end = msg.find("\": ", cmd_at);
    if (cmd_end == std::string::npos) continue;
    const auto cmd = msg.substr(cmd_at, cmd_end - cmd_at);
    auto why = msg.substr(cmd_end + 3);
    if (why.rfind("stat ", 0) == 0)
      if (auto colon = why.find(": "); colon != std::string::npos) why = why.substr(colon + 2);  // "stat /nope: "
    const bool not_there = why.find("no such file") != std::string::npos || why.find("not found") != std::string::npos;
    return StartFailure{"cannot run " + cmd + ": " + why, not_there ? 127 : 126, true};
  }
  if (!last_error.empty()) return StartFailure{"runc: " + last_error, 255, false};
  return std::nullopt;
}

std::vector<std::string> Sandbox::present() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(state_dir_) / "instances", ec))
    if (fs::exists(e.path() / "shim.state")) out.push_back(e.path().filename().string());
  return out;
}

std::optional<ProbeTarget> Sandbox::probe_target(const std::string& id) const {
  auto p = pid(id);
  if (!p) return std::nullopt;
  return ProbeTarget{*p, "127.0.0.1"};
}

std::optional<pid_t> Sandbox::pid(const std::string& id) const { return shim_files::running_pid(dir(id)); }

void Sandbox::destroy(const std::string& id) {
  if (!valid_run_id(id)) return;
  ::umount2((fs::path(dir(id)) / "rootfs").c_str(), MNT_DETACH);
  destroy_run_network(id);
  std::error_code ec;
  fs::remove_all(dir(id), ec);
}

}  // namespace platform::agent
