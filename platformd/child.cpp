#include "platformd/child.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <thread>

#include "engine/error.h"
#include "engine/exec.h"

namespace platform::dev {
namespace fs = std::filesystem;
namespace {
struct RunAs {
  uid_t uid = 0;
  gid_t gid = 0;
  bool drop = false;
};

RunAs run_as() {
  RunAs r;
  if (::geteuid() != 0) return r;
  auto* pw = ::getpwnam("postgres");
  if (!pw)
    throw PlatformError(ErrorCode::unavailable, "running as root, but there is no \"postgres\" system user to run PostgreSQL as",
                        "Install postgresql-15 (it creates the user) or run as a normal user.");
  r.uid = pw->pw_uid;
  r.gid = pw->pw_gid;
  r.drop = true;
  return r;
}

void chown_tree(const fs::path& p, const RunAs& who) {
  if (!who.drop) return;
  if (::chown(p.c_str(), who.uid, who.gid) != 0) return;
  if (fs::is_directory(p))
    for (const auto& e : fs::recursive_directory_iterator(p)) (void)::chown(e.path().c_str(), who.uid, who.gid);
}

}  // namespace

pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& options) {
  RunAs who;
  if (options.as_postgres_user) who = run_as();
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw PlatformError(ErrorCode::internal, "fork failed", "");
  if (pid == 0) {
    ::setsid();
    int fd = ::open(options.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0640);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    if (who.drop && (::setgid(who.gid) != 0 || ::setuid(who.uid) != 0)) ::_exit(126);
    if (options.death_signal != 0) {
      ::prctl(PR_SET_PDEATHSIG, options.death_signal);  // after setuid: changing credentials clears it
      if (::getppid() != parent) ::_exit(1);
    }
    exec_or_exit(argv);
  }
  return pid;
}

bool child_running(pid_t& pid) {
  if (pid <= 0) return false;
  int status = 0;
  if (::waitpid(pid, &status, WNOHANG) == pid) {
    pid = -1;
    return false;
  }
  return true;
}

void stop_child(pid_t& pid, int sig, std::chrono::milliseconds grace, int last_resort) {
  if (pid <= 0) return;
  ::kill(pid, sig);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (child_running(pid) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (pid <= 0) return;
  ::kill(pid, last_resort);
  ::waitpid(pid, nullptr, 0);
  pid = -1;
}

void give_to_postgres_user(const std::string& path) { chown_tree(path, run_as()); }

std::string postgres_user_cannot_enter(const std::string& path) {
  const RunAs who = run_as();
  if (!who.drop) return "";
  fs::path at;
  for (const auto& part : fs::absolute(path).lexically_normal()) {
    at /= part;
    struct stat st {};
    if (::stat(at.c_str(), &st) != 0) return "";  // not there yet: created by us, and given to postgres
    if (!S_ISDIR(st.st_mode)) continue;
    const mode_t search = st.st_uid == who.uid ? S_IXUSR : st.st_gid == who.gid ? S_IXGRP : S_IXOTH;
    if (!(st.st_mode & search)) return at.string();
  }
  return "";
}

std::string tail_of(const std::string& file, int lines) {
  std::ifstream in(file);
  std::string line, last;
  std::vector<std::string> all;
  while (std::getline(in, line)) all.push_back(line);
  auto n = static_cast<std::size_t>(lines);
  for (std::size_t i = all.size() > n ? all.size() - n : 0; i < all.size(); ++i) last += all[i] + "\n";
  return last;
}

int run_to_end(const std::vector<std::string>& argv, const SpawnOptions& options) {
  pid_t pid = spawn(argv, options);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace platform::dev
