// platform-init: PID 1 inside every microVM (docs/agent.md#microvm). Static, no libraries beyond libc.
// It mounts /proc, /sys and /dev, reads what to run from /platform/run (one NUL-separated record per
// line kind, see below), starts it as the image's user in its workdir with its env, forwards SIGTERM
// and SIGINT to it, reaps every child (it is the reaper of the VM), prints how the process ended on the
// console ("platform-init: exited with status N" / "platform-init: killed by signal N") and powers the
// VM off, which makes QEMU exit.
//
// /platform/run is plain text: lines "argv <arg>", "env <NAME=value>", "dir <path>", "uid <n>",
// "gid <n>", in any order; argv lines in order. (No JSON parser in PID 1.)
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

volatile sig_atomic_t g_child = 0;

extern "C" void forward(int sig) {
  if (g_child > 0) ::kill(g_child, sig);
}

void say(const std::string& line) {
  std::string out = "platform-init: " + line + "\n";
  (void)!::write(1, out.data(), out.size());
}

[[noreturn]] void power_off(int code) {
  say("powering off");
  ::sync();
  ::reboot(RB_POWER_OFF);
  ::_exit(code);  // not PID 1 (a test run): just end
}

struct Run {
  std::vector<std::string> argv, env;
  std::string dir = "/";
  uid_t uid = 0;
  gid_t gid = 0;
};

Run read_run(const char* path) {
  Run r;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const auto sp = line.find(' ');
    const auto key = line.substr(0, sp), value = sp == std::string::npos ? "" : line.substr(sp + 1);
    if (key == "argv") r.argv.push_back(value);
    else if (key == "env") r.env.push_back(value);
    else if (key == "dir") r.dir = value;
    else if (key == "uid") r.uid = static_cast<uid_t>(std::strtoul(value.c_str(), nullptr, 10));
    else if (key == "gid") r.gid = static_cast<gid_t>(std::strtoul(value.c_str(), nullptr, 10));
  }
  return r;
}

// argv[0] as given when it has a '/', else the first match on the env's PATH.
std::string resolve(const Run& r) {
  const auto& cmd = r.argv.front();
  if (cmd.find('/') != std::string::npos) return cmd;
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const auto& e : r.env)
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  std::size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    auto candidate = path.substr(start, end - start) + "/" + cmd;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return cmd;
}

}  // namespace

int main() {
  ::mkdir("/proc", 0555);
  ::mkdir("/sys", 0555);
  ::mkdir("/dev", 0755);
  ::mkdir("/tmp", 01777);
  ::mount("proc", "/proc", "proc", 0, nullptr);
  ::mount("sysfs", "/sys", "sysfs", 0, nullptr);
  ::mount("devtmpfs", "/dev", "devtmpfs", 0, nullptr);
  auto run = read_run("/platform/run");
  if (run.argv.empty()) {
    say("nothing to run (/platform/run has no argv)");
    power_off(127);
  }
  struct sigaction sa {};
  sa.sa_handler = forward;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);

  const auto exe = resolve(run);
  pid_t child = ::fork();
  if (child == 0) {
    ::setsid();
    if (::chdir(run.dir.c_str()) != 0) {
      say("cannot enter " + run.dir + ": " + std::strerror(errno));
      ::_exit(126);
    }
    if ((run.gid != 0 && ::setgid(run.gid) != 0) || (run.uid != 0 && ::setuid(run.uid) != 0)) {
      say("cannot switch to the image's user: " + std::string(std::strerror(errno)));
      ::_exit(126);
    }
    std::vector<char*> argv, envp;
    for (auto& a : run.argv) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : run.env) envp.push_back(e.data());
    envp.push_back(nullptr);
    ::execve(exe.c_str(), argv.data(), envp.data());
    say("cannot run " + exe + ": " + std::strerror(errno));
    ::_exit(127);
  }
  g_child = child;
  int code = 0;
  for (;;) {  // reap everything; stop when the main process ends
    int status = 0;
    pid_t p = ::waitpid(-1, &status, 0);
    if (p < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p != child) continue;
    if (WIFEXITED(status)) {
      code = WEXITSTATUS(status);
      say("exited with status " + std::to_string(code));
    } else if (WIFSIGNALED(status)) {
      code = 128 + WTERMSIG(status);
      say("killed by signal " + std::to_string(WTERMSIG(status)));
    }
    break;
  }
  power_off(code);
}
