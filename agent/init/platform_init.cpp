// platform-init: PID 1 inside every microVM (docs/agent.md#microvms). Static, no libraries beyond libc.
//
// Boot: mounts /proc, /sys, /dev, /run; loads the virtio modules the initramfs carries; brings up the
// network the run file names; puts a memory cgroup around the process; mounts the secrets file
// read-only at /run/platform/secrets; then starts the image's process (/platform/run: argv, env,
// workdir, user) with stdout on ttyS1 and stderr on ttyS2, and hides /platform.
//
// Then it is the VM's reaper and serves the agent's control line, the virtio port "platform.control"
// (agent/init/control_line.h): signals for the process and commands to run inside the instance, many
// at once.
// When the process ends it prints how on the console ("platform-init: exited with status N",
// "platform-init: killed by signal N", "... (out of memory)") and powers the VM off, so QEMU exits.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "agent/init/control_line.h"
#include "agent/init/guest_setup.h"

using namespace platform::init;

namespace {

[[noreturn]] void power_off(int code, std::initializer_list<int> ports) {
  for (int fd : ports) ::tcdrain(fd);  // the process's last lines are on the wire before the VM goes
  ::sync();
  ::reboot(RB_POWER_OFF);
  ::_exit(code);  // not PID 1 (a test run): just end
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
// `in`: its stdin, or -1 for /dev/null.
[[noreturn]] void become(const RunFile& run, std::vector<std::string> argv, std::vector<std::string> env, int in, int out,
                         int err, bool cgroup) {
  ::setsid();
  if (in >= 0 && ::isatty(in)) ::ioctl(in, TIOCSCTTY, 0);  // a session's terminal: Ctrl-C, resizes reach it
  if (cgroup) join_app_cgroup(::getpid());
  if (in < 0) in = ::open("/dev/null", O_RDONLY);
  ::dup2(in, 0);
  ::signal(SIGPIPE, SIG_DFL);  // ignored by platform-init, and an ignored signal stays ignored across exec
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
  // As a shell says it: 127 when there is no such command, 126 when it is there but cannot be run.
  fail("cannot run " + exe + ": " + std::strerror(errno), errno == ENOENT || errno == ENOTDIR ? 127 : 126);
  ::_exit(127);
}

}  // namespace

int main() {
  mount_basics();
  auto run = read_run("/platform/run");
  // The process's output: its own serial ports when the VM has them, else the console.
  int out = run.serial_stdio ? open_serial("/dev/ttyS1", O_WRONLY) : -1;
  int err = run.serial_stdio ? open_serial("/dev/ttyS2", O_WRONLY) : -1;
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
  // The agent's control line: the virtio port QEMU names "platform.control" (with the serial ports).
  int ctl = run.serial_stdio ? open_virtio_port("platform.control", 5000) : -1;
  if (run.serial_stdio && ctl < 0) tell("no control port (platform.control): exec and stop signals will not reach this VM");
  setup_network(run);
  const bool cgroup = setup_memory_cgroup(run.memory_mib);
  mount_secrets(run.uid, run.gid);
  ::mount("tmpfs", "/platform", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=700");

  sigset_t mask;
  ::sigemptyset(&mask);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGIO}) ::sigaddset(&mask, s);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sfd = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

  ::signal(SIGPIPE, SIG_IGN);  // a command that stops reading its stdin costs EPIPE
  const pid_t child = ::fork();
  if (child == 0) become(run, run.argv, run.env, -1, out, err, cgroup);
  say("started " + run.argv.front());

  if (ctl >= 0) {  // SIGIO when the agent connects to the line (the port says so)
    ::fcntl(ctl, F_SETOWN, ::getpid());
    ::fcntl(ctl, F_SETFL, ::fcntl(ctl, F_GETFL) | O_ASYNC);
  }
  ControlLine control(ctl, child, [&](const std::vector<std::string>& argv, const std::vector<std::string>& env, int in, int o) {
    const pid_t pid = ::fork();
    if (pid == 0) {  // its own env first: the first of two equal names wins
      auto all = env;
      all.insert(all.end(), run.env.begin(), run.env.end());
      become(run, argv, all, in, o, o, cgroup);
    }
    return pid;
  });
  std::vector<pollfd> fds;
  for (;;) {
    fds.assign(1, {sfd, POLLIN, 0});
    control.add_polls(fds);
    ::poll(fds.data(), fds.size(), control.poll_timeout_ms());
    control.handle(fds.data() + 1, fds.size() - 1);
    if (!(fds[0].revents & POLLIN)) continue;
    signalfd_siginfo si{};
    while (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) ::kill(child, static_cast<int>(si.ssi_signo));
      if (si.ssi_signo == SIGIO) control.host_changed();
    }
    for (;;) {  // reap everything; the VM ends when the main process does
      int status = 0;
      pid_t p = ::waitpid(-1, &status, WNOHANG);
      if (p <= 0) break;
      if (control.reaped(p, status)) continue;
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
      control.kill_all();
      power_off(code, {1, out, err});
    }
  }
}
