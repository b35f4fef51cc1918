// Sandbox::open_session: `runc exec` relaying an interactive session. With a tty, runc's stdin, stdout and
// stderr are the replica side of a terminal we open, so runc puts the command on a terminal of its own
// and relays it to ours (resizing it when ours is resized: runc gets SIGWINCH as that terminal's
// foreground process); the session reads and writes our master side. Without, they are one end of a
// socket pair.
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <thread>

#include "agent/files.h"
#include "agent/sandbox.h"
#include "engine/error.h"
#include "engine/exec.h"
#include "engine/json.h"

namespace platform::agent {
namespace fs = std::filesystem;

namespace {

class RuncSession final : public Session {
 public:
  RuncSession(pid_t pid, int fd, bool tty, std::string pid_file)
      : pid_(pid), fd_(fd), tty_(tty), pid_file_(std::move(pid_file)) {}
  ~RuncSession() override {
    if (!status_) {
      kill();
      wait(std::chrono::seconds(5));
    }
    ::close(fd_);
    std::error_code ec;
    fs::remove(pid_file_, ec);
    fs::remove(pid_file_.substr(0, pid_file_.size() - 4) + ".json", ec);  // its process, with a terminal
    fs::remove(log_file(), ec);
  }
  int fd() const override { return fd_; }
  void end_input() override {
    if (tty_) {
      const char eot = 4;  // Ctrl-D: the end of input to a terminal's reader in canonical mode
      [[maybe_unused]] auto n = ::write(fd_, &eot, 1);
    } else {
      ::shutdown(fd_, SHUT_WR);
    }
  }
  void resize(int rows, int cols) override {
    if (!tty_) return;
    winsize ws{};
    ws.ws_row = static_cast<unsigned short>(rows);
    ws.ws_col = static_cast<unsigned short>(cols);
    ::ioctl(fd_, TIOCSWINSZ, &ws);
  }
  std::optional<int> wait(std::chrono::milliseconds timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!status_) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        if (*status_ == 255)
          if (auto failed = runc_start_failure(log_file())) {
            status_ = failed->exit_code;
            // On a terminal runc's own stderr is not the session's (see open_session): say it here,
            // whatever went wrong (without one, runc's line is in the output already).
            if (tty_) start_failure_ = failed->why;
          }
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return status_;
  }
  void kill() override {
    // The command's host pid too: killing `runc exec` alone would leave it running.
    if (auto inner = std::atol(read_text(pid_file_).c_str()); inner > 0) ::kill(static_cast<pid_t>(inner), SIGKILL);
    if (!status_) ::kill(pid_, SIGKILL);
  }
  std::string start_failure() const override { return start_failure_; }
  std::string log_file() const { return pid_file_.substr(0, pid_file_.size() - 4) + ".log"; }

 private:
  pid_t pid_;
  int fd_;
  bool tty_;
  std::string pid_file_;
  std::optional<int> status_;
  std::string start_failure_;
};

// A session whose command is not there: it has ended before it began, with a shell's status and words.
class NotThereSession final : public Session {
 public:
  NotThereSession(int fd, std::string why) : fd_(fd), why_(std::move(why)) {}
  ~NotThereSession() override { ::close(fd_); }
  int fd() const override { return fd_; }  // its peer is closed: the output ends at once
  void end_input() override {}
  void resize(int, int) override {}
  std::optional<int> wait(std::chrono::milliseconds) override { return 127; }
  void kill() override {}
  std::string start_failure() const override { return why_; }

 private:
  int fd_;
  std::string why_;
};

// Whether `command` is in the instance's root filesystem (seen through its first process, `init`) where
// runc would look for it: a path as it is, a bare name along PATH. Returns why not, in a shell's words,
// only when it is surely not there; "" when it is, or when that cannot be told (runc says then).
// Without a terminal, runc's own message would reach the session as if the command had written it.
std::string missing_command(pid_t init, const std::string& command, const std::string& path) {
  const int root = ::open(("/proc/" + std::to_string(init) + "/root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return "";
  auto lookup = [root](const std::string& file) {  // 0: there; else why not (errno)
    open_how how{};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT;  // absolute links resolve inside the instance, as for its processes
    const int fd = static_cast<int>(::syscall(SYS_openat2, root, file.c_str(), &how, sizeof how));
    if (fd < 0) return errno;
    ::close(fd);
    return 0;
  };
  auto gone = [](int e) { return e == ENOENT || e == ENOTDIR; };
  std::string why;
  if (command.front() == '/') {
    if (gone(lookup(command))) why = "cannot run " + command + ": no such file or directory";
  } else if (command.find('/') == std::string::npos) {
    bool all_gone = true;
    std::istringstream dirs(path);
    for (std::string dir; all_gone && std::getline(dirs, dir, ':');)
      all_gone = !dir.empty() && dir.front() == '/' && gone(lookup(dir + "/" + command));
    if (all_gone) why = "cannot run " + command + ": executable file not found in $PATH";
  }
  ::close(root);
  return why;
}

// The PATH the command is looked up along: the session's own, else the instance process's, else runc's.
std::string command_path(const std::map<std::string, std::string>& env, const Json& process) {
  if (auto it = env.find("PATH"); it != env.end()) return it->second;
  for (const auto& e : process.value("env", Json::array()))
    if (e.is_string() && e.get_ref<const std::string&>().rfind("PATH=", 0) == 0) return e.get<std::string>().substr(5);
  return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

[[noreturn]] void cannot(const std::string& what) {
  throw PlatformError(ErrorCode::internal, "cannot start the session: " + what + ": " + std::strerror(errno), "");
}

}  // namespace

std::unique_ptr<Session> Sandbox::open_session(const std::string& id, const std::vector<std::string>& argv,
                                               const std::map<std::string, std::string>& env, bool tty, int rows,
                                               int cols) const {
  if (!valid_run_id(id) || argv.empty()) throw PlatformError(ErrorCode::invalid_request, "nothing to run", "");
  if (auto init = pid(id)) {
    Json process;
    try {
      process = Json::parse(read_text(fs::path(dir(id)) / "config.json")).at("process");
    } catch (const std::exception&) {
    }
    if (auto why = missing_command(*init, argv[0], command_path(env, process)); !why.empty()) {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) cannot("a socket pair");
      ::close(sv[1]);
      return std::make_unique<NotThereSession>(sv[0], why);
    }
  }
  int ours = -1, theirs = -1;
  struct Closer {  // both ends, should anything below throw; ours is handed on at the end
    int& a;
    int& b;
    ~Closer() {
      if (a >= 0) ::close(a);
      if (b >= 0) ::close(b);
    }
  } closer{ours, theirs};
  if (tty) {
    ours = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (ours < 0 || ::grantpt(ours) != 0 || ::unlockpt(ours) != 0) cannot("a terminal");
    char name[128];
    if (::ptsname_r(ours, name, sizeof name) != 0) cannot("a terminal's name");
    theirs = ::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (theirs < 0) cannot(name);
    winsize ws{};
    ws.ws_row = static_cast<unsigned short>(rows);
    ws.ws_col = static_cast<unsigned short>(cols);
    ::ioctl(ours, TIOCSWINSZ, &ws);
  } else {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) cannot("a socket pair");
    ours = sv[0];
    theirs = sv[1];
  }
  static std::atomic<unsigned> opened{0};
  const auto pid_file = (fs::path(dir(id)) / fmt::format("session-{}-{}.pid", ::getpid(), ++opened)).string();
  // runc's own messages also go to a log, where a command that could not start is told apart (see
  // runc_start_failure); on a terminal, that log is the only place they go.
  std::vector<std::string> args = {runc_, "--root", (fs::path(state_dir_) / "runc").string(), "--log",
                                   pid_file.substr(0, pid_file.size() - 4) + ".log", "--log-format", "json",
                                   "exec", "--pid-file", pid_file};
  if (tty) {
    // The container's process with our command, env and a terminal of our size from its start: runc
    // sizes the terminal before the command runs only from the process's consoleSize (with --tty alone
    // it copies ours over once the command already runs, and a program that looks at once sees 0x0).
    Json process;
    try {
      process = Json::parse(read_text(fs::path(dir(id)) / "config.json")).at("process");
    } catch (const std::exception& e) {
      throw PlatformError(ErrorCode::internal, std::string("cannot start the session: the instance's config: ") + e.what(), "");
    }
    Json vars = Json::array();
    for (const auto& [k, v] : env) vars.push_back(k + "=" + v);
    for (const auto& e : process.value("env", Json::array())) {
      const auto& kv = e.get_ref<const std::string&>();
      if (!env.contains(kv.substr(0, kv.find('=')))) vars.push_back(kv);
    }
    process["args"] = argv;
    process["env"] = vars;
    process["terminal"] = true;
    process["consoleSize"] = {{"height", rows}, {"width", cols}};
    const auto file = pid_file.substr(0, pid_file.size() - 4) + ".json";
    write_atomically(file, process.dump());
    args.insert(args.end(), {"--process", file, id});
  } else {
    for (const auto& [k, v] : env) {
      args.push_back("--env");
      args.push_back(k + "=" + v);
    }
    args.push_back(id);
    args.insert(args.end(), argv.begin(), argv.end());
  }
  const pid_t pid = ::fork();
  if (pid < 0) cannot("fork");
  if (pid == 0) {
    if (tty) {
      ::setsid();  // our terminal becomes runc's controlling one: it gets SIGWINCH when we resize it
      ::ioctl(theirs, TIOCSCTTY, 0);
    }
    ::dup2(theirs, 0);
    ::dup2(theirs, 1);
    // With a terminal the command's stdout and stderr are both on the terminal runc makes for it and
    // relays to its own stdout; runc's stderr carries only runc's messages, which its log has.
    if (tty) {
      const int null = ::open("/dev/null", O_WRONLY);
      if (null >= 0 && null != 2) {
        ::dup2(null, 2);
        if (null > 2) ::close(null);
      }
    } else {
      ::dup2(theirs, 2);
    }
    exec_or_exit(args);
  }
  ::close(theirs);
  theirs = -1;
  ::fcntl(ours, F_SETFL, ::fcntl(ours, F_GETFL) | O_NONBLOCK);
  auto session = std::make_unique<RuncSession>(pid, ours, tty, pid_file);
  ours = -1;  // the session's now
  return session;
}

}  // namespace platform::agent
