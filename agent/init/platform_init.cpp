// platform-init: PID 1 inside every microVM (docs/agent.md#microvms). Static, no libraries beyond libc.
//
// Boot: mounts /proc, /sys, /dev, /run; loads the virtio modules the initramfs carries; brings up the
// network the run file names; puts a memory cgroup around the process; mounts the secrets file
// read-only at /run/platform/secrets; then starts the image's process (/platform/run: argv, env,
// workdir, user) with stdout on ttyS1 and stderr on ttyS2, and hides /platform.
//
// Then it is the VM's reaper and listens on ttyS3, the agent's control line:
//   "signal N"                    forwards signal N to the process (the agent's stop)
//   "exec-begin", "argv A"..., "env K=V"..., "timeout MS", "exec-end"
//                                 runs a command inside the instance (exec health checks) and answers
//                                 "exec-result <exit code> <timed out 0|1> <bytes>\n<output>"
// When the process ends it prints how on the console ("platform-init: exited with status N",
// "platform-init: killed by signal N", "... (out of memory)") and powers the VM off, so QEMU exits.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "agent/init/guest_setup.h"

using namespace platform::init;

namespace {

[[noreturn]] void power_off(int code, std::initializer_list<int> ports) {
  for (int fd : ports) ::tcdrain(fd);  // the process's last lines are on the wire before the VM goes
  ::sync();
  ::reboot(RB_POWER_OFF);
  ::_exit(code);  // not PID 1 (a test run): just end
}

long now_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// argv[0] as given when it has a '/', else the first match on the env's PATH.
std::string resolve(const std::string& cmd, const std::vector<std::string>& env) {
  if (cmd.find('/') != std::string::npos) return cmd;
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const auto& e : env)
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

// In the child: join the app's cgroup, become the image's user in its workdir, exec. Never returns.
[[noreturn]] void become(const RunFile& run, std::vector<std::string> argv, std::vector<std::string> env, int out, int err,
                         bool cgroup) {
  ::setsid();
  if (cgroup) join_app_cgroup(::getpid());
  int in = ::open("/dev/null", O_RDONLY);
  ::dup2(in, 0);
  ::dup2(out, 1);
  ::dup2(err, 2);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  auto fail = [&](const std::string& what, int code) {
    const auto line = "platform-init: " + what + "\n";
    (void)!::write(2, line.data(), line.size());
    ::_exit(code);
  };
  if (::chdir(run.dir.c_str()) != 0) fail("cannot enter " + run.dir + ": " + std::strerror(errno), 126);
  if (run.uid != 0 || run.gid != 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(run.gid) != 0 || ::setuid(run.uid) != 0)
      fail("cannot switch to the image's user: " + std::string(std::strerror(errno)), 126);
  }
  const auto exe = resolve(argv.front(), env);
  std::vector<char*> a, e;
  for (auto& s : argv) a.push_back(s.data());
  a.push_back(nullptr);
  for (auto& s : env) e.push_back(s.data());
  e.push_back(nullptr);
  ::execve(exe.c_str(), a.data(), e.data());
  fail("cannot run " + exe + ": " + std::strerror(errno), 127);
  ::_exit(127);
}

// One exec command at a time (the agent runs health checks one after another).
struct Exec {
  pid_t pid = 0;
  int out = -1;
  long deadline = 0;
  std::string output;
  std::vector<std::string> argv, env;
  long timeout_ms = 5000;
};

void answer(int ctl, int code, bool timed_out, const std::string& output) {
  const auto body = output.substr(0, 4096);
  const auto head = "exec-result " + std::to_string(code) + " " + (timed_out ? "1" : "0") + " " + std::to_string(body.size()) + "\n";
  const auto all = head + body;
  if (ctl >= 0) (void)!::write(ctl, all.data(), all.size());
}

void drain(Exec& x) {
  char buf[4096];
  for (ssize_t n; (n = ::read(x.out, buf, sizeof buf)) > 0;)
    if (x.output.size() < 4096) x.output.append(buf, static_cast<std::size_t>(n));
}

void finish_exec(Exec& x, int ctl, int status, bool timed_out) {
  drain(x);
  ::close(x.out);
  const int code = timed_out ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  answer(ctl, code, timed_out, x.output);
  x = Exec{};
}

}  // namespace

int main() {
  mount_basics();
  auto run = read_run("/platform/run");
  // The process's output: its own serial ports when the VM has them, else the console.
  int out = run.serial_stdio ? open_serial("/dev/ttyS1", O_WRONLY) : -1;
  int err = run.serial_stdio ? open_serial("/dev/ttyS2", O_WRONLY) : -1;
  int ctl = run.serial_stdio ? open_serial("/dev/ttyS3", O_RDWR | O_NONBLOCK) : -1;
  if (out < 0) out = 1;
  if (err < 0) err = 1;
  auto tell = [&](const std::string& line) {  // on the console and in the instance's stderr
    say(line);
    if (err != 1) {
      const auto l = "platform-init: " + line + "\n";
      (void)!::write(err, l.data(), l.size());
    }
  };
  if (run.argv.empty()) {
    tell("nothing to run (/platform/run has no argv)");
    power_off(127, {1, err});
  }
  load_modules(run.modules);
  setup_network(run);
  const bool cgroup = setup_memory_cgroup(run.memory_mib);
  mount_secrets(run.uid, run.gid);
  ::mount("tmpfs", "/platform", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=700");

  sigset_t mask;
  ::sigemptyset(&mask);
  for (int s : {SIGCHLD, SIGTERM, SIGINT}) ::sigaddset(&mask, s);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sfd = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

  const pid_t child = ::fork();
  if (child == 0) become(run, run.argv, run.env, out, err, cgroup);
  say("started " + run.argv.front());

  Exec x;
  std::string ctl_buf;
  std::vector<std::string> pending_argv, pending_env;
  long pending_timeout = 5000;
  for (;;) {
    // -1 fds are ignored by poll: the control line when there is none, the exec output when none runs.
    pollfd fds[3] = {{sfd, POLLIN, 0}, {ctl, POLLIN, 0}, {x.pid ? x.out : -1, POLLIN, 0}};
    int wait_ms = x.pid ? static_cast<int>(std::max(0L, x.deadline - now_ms())) : -1;
    ::poll(fds, 3, wait_ms);
    if (x.pid && now_ms() >= x.deadline) {  // the exec command ran out of time: kill it and its children
      ::kill(-x.pid, SIGKILL);
      int status = 0;
      ::waitpid(x.pid, &status, 0);
      finish_exec(x, ctl, status, true);
    }
    if (x.pid) drain(x);
    if (ctl >= 0 && (fds[1].revents & POLLIN)) {
      char buf[1024];
      for (ssize_t n; (n = ::read(ctl, buf, sizeof buf)) > 0;) ctl_buf.append(buf, static_cast<std::size_t>(n));
      for (std::size_t nl; (nl = ctl_buf.find('\n')) != std::string::npos;) {
        auto line = ctl_buf.substr(0, nl);
        ctl_buf.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const auto sp = line.find(' ');
        const auto key = line.substr(0, sp), value = sp == std::string::npos ? "" : line.substr(sp + 1);
        if (key == "signal") {
          ::kill(child, std::atoi(value.c_str()));
        } else if (key == "exec-begin") {
          pending_argv.clear();
          pending_env.clear();
          pending_timeout = 5000;
        } else if (key == "argv") {
          pending_argv.push_back(value);
        } else if (key == "env") {
          pending_env.push_back(value);
        } else if (key == "timeout") {
          pending_timeout = std::max(1L, std::atol(value.c_str()));
        } else if (key == "exec-end") {
          if (x.pid || pending_argv.empty()) {
            answer(ctl, -1, false, x.pid ? "another command is running" : "nothing to run");
            continue;
          }
          int pipefd[2];
          if (::pipe2(pipefd, O_CLOEXEC) != 0) {
            answer(ctl, -1, false, std::string("pipe: ") + std::strerror(errno));
            continue;
          }
          x.pid = ::fork();
          if (x.pid == 0) {  // its own env first: the first of two equal names wins
            pending_env.insert(pending_env.end(), run.env.begin(), run.env.end());
            become(run, pending_argv, pending_env, pipefd[1], pipefd[1], cgroup);
          }
          ::close(pipefd[1]);
          ::fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
          x.out = pipefd[0];
          x.deadline = now_ms() + pending_timeout;
        }
      }
      if (ctl_buf.size() > 65536) ctl_buf.clear();  // nonsense on the line
    }
    if (!(fds[0].revents & POLLIN)) continue;
    signalfd_siginfo si{};
    while (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) ::kill(child, static_cast<int>(si.ssi_signo));
    }
    for (;;) {  // reap everything; the VM ends when the main process does
      int status = 0;
      pid_t p = ::waitpid(-1, &status, WNOHANG);
      if (p <= 0) break;
      if (x.pid && p == x.pid) {
        finish_exec(x, ctl, status, false);
        continue;
      }
      if (p != child) continue;
      int code = 0;
      if (WIFEXITED(status)) {
        code = WEXITSTATUS(status);
        say("exited with status " + std::to_string(code));
      } else {
        code = 128 + WTERMSIG(status);
        const bool oom = WTERMSIG(status) == SIGKILL && cgroup && app_cgroup_oom_killed();
        say("killed by signal " + std::to_string(WTERMSIG(status)) + (oom ? " (out of memory)" : ""));
      }
      if (x.pid) ::kill(-x.pid, SIGKILL);
      power_off(code, {1, out, err});
    }
  }
}
