// The microVM control line's two ends against each other, without QEMU: platform-init's ControlLine
// (agent/init/control_line.h) serving real child processes on one end of a socket pair, the agent's
// VmControl (agent/vm_control.h) on the other. microvm_test runs the same protocol through a real VM.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "agent/init/control_line.h"
#include "agent/vm_control.h"
#include "agent/vm_session.h"

using namespace platform;
using namespace std::chrono;

namespace {

// Starts argv in its own process group with `in` (or /dev/null) as stdin and `out` as stdout and
// stderr, as platform-init's spawn does (without its user, workdir and cgroup).
pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env, int in, int out) {
  std::vector<std::string> all_env = env;
  all_env.push_back("PATH=/usr/bin:/bin");
  std::vector<char*> a, e;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  for (const auto& s : all_env) e.push_back(const_cast<char*>(s.c_str()));
  e.push_back(nullptr);
  const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    if (in >= 0 && ::isatty(in)) ::ioctl(in, TIOCSCTTY, 0);  // a session's terminal, as platform-init makes it
    ::dup2(in >= 0 ? in : null, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::signal(SIGPIPE, SIG_DFL);
    ::execve(a[0], a.data(), e.data());
    ::_exit(127);
  }
  ::close(null);
  return pid;
}

// platform-init's loop around the guest's end, on a thread: poll, handle, reap.
class Guest {
 public:
  Guest(int fd, pid_t process) : line_(fd, process, spawn), fd_(fd) {
    ::signal(SIGPIPE, SIG_IGN);  // as platform-init does (the line's contract)
    thread_ = std::thread([this] { loop(); });
  }
  ~Guest() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  // How a child that is not a command ended (the process the "signal" command reaches).
  std::optional<int> ended(pid_t pid) {
    std::lock_guard lock(mu_);
    auto it = others_.find(pid);
    if (it == others_.end()) return std::nullopt;
    return it->second;
  }

 private:
  void loop() {
    std::vector<pollfd> fds;
    while (!stop_) {
      fds.clear();
      line_.add_polls(fds);
      const int wait = line_.poll_timeout_ms();
      ::poll(fds.data(), fds.size(), wait < 0 || wait > 20 ? 20 : wait);
      line_.handle(fds.data(), fds.size());
      int status = 0;
      for (pid_t p; (p = ::waitpid(-1, &status, WNOHANG)) > 0;) {
        if (line_.reaped(p, status)) continue;
        std::lock_guard lock(mu_);
        others_[p] = status;
      }
    }
    line_.kill_all();
  }

  init::ControlLine line_;
  int fd_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::map<pid_t, int> others_;
  std::thread thread_;
};

class ControlLineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ::fcntl(sv[1], F_SETFL, O_NONBLOCK);  // as platform-init opens its port
    process_ = spawn({"/bin/sleep", "30"}, {}, -1, 2);
    host_ = std::make_shared<agent::VmControl>(sv[0]);
    guest_ = std::make_unique<Guest>(sv[1], process_);
  }
  void TearDown() override {
    host_.reset();
    guest_.reset();
    ::kill(process_, SIGKILL);
    ::waitpid(process_, nullptr, WNOHANG);
  }
  agent::ExecResult run(const std::vector<std::string>& argv, milliseconds timeout = seconds(10),
                        std::size_t max_output = 1 << 20, const std::string& input = {},
                        const std::map<std::string, std::string>& env = {}) {
    return host_->run(argv, env, timeout, max_output, input);
  }

  std::unique_ptr<agent::Session> session(const std::vector<std::string>& argv, bool tty = false, int rows = 24,
                                          int cols = 80) {
    return agent::open_vm_session(host_, argv, {}, tty, rows, cols);
  }

  pid_t process_ = -1;
  std::shared_ptr<agent::VmControl> host_;
  std::unique_ptr<Guest> guest_;
};

}  // namespace

TEST(Base64Decode, DecodesTheStandardAlphabetAndRefusesOthers) {
  std::string out;
  EXPECT_TRUE(init::base64_decode("aGVsbG8gd29ybGQ=", out));
  EXPECT_EQ(out, "hello world");
  out.clear();
  EXPECT_TRUE(init::base64_decode("AP8A/w", out));  // padding optional
  EXPECT_EQ(out, std::string("\x00\xff\x00\xff", 4));
  out.clear();
  EXPECT_FALSE(init::base64_decode("aGVs*G8=", out));
}

TEST_F(ControlLineTest, ACommandsOutputAndExitStatusComeBackByItsTag) {
  auto r = run({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.output, "out\nerr\n");
  auto v = run({"/bin/sh", "-c", "echo \"$GREETING\""}, seconds(10), 1 << 20, {}, {{"GREETING", "hi there"}});
  EXPECT_EQ(v.output, "hi there\n");
  auto missing = run({"/nonexistent/command"});
  EXPECT_EQ(missing.exit_code, 127);
  auto killed = run({"/bin/sh", "-c", "kill -9 $$"});
  EXPECT_EQ(killed.exit_code, 128 + 9);
}

TEST_F(ControlLineTest, ManyCommandsRunAtOnceAndALongOneHoldsUpNoOther) {
  agent::ExecResult slow;
  std::thread beside([&] { slow = run({"/bin/sh", "-c", "sleep 2; echo slow"}); });
  std::this_thread::sleep_for(milliseconds(200));
  std::vector<std::thread> quick;
  std::atomic<int> ok{0};
  const auto at = steady_clock::now();
  for (int i = 0; i < 8; ++i)
    quick.emplace_back([&, i] {
      auto r = run({"/bin/sh", "-c", "echo $0", std::to_string(i)});
      if (r.exit_code == 0 && r.output == std::to_string(i) + "\n") ++ok;
    });
  for (auto& t : quick) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_LT(steady_clock::now() - at, milliseconds(1500)) << "the quick commands waited for the slow one";
  beside.join();
  EXPECT_EQ(slow.exit_code, 0);
  EXPECT_EQ(slow.output, "slow\n");
}

TEST_F(ControlLineTest, StdinGoesInWholeAndOutputIsCutAtTheLimit) {
  std::string input(300 * 1024, '\0');
  for (std::size_t i = 0; i < input.size(); ++i) input[i] = static_cast<char>((i * 2654435761u) >> 11);
  auto cat = run({"/bin/cat"}, seconds(10), 1 << 20, input);
  EXPECT_EQ(cat.exit_code, 0);
  EXPECT_FALSE(cat.truncated);
  EXPECT_TRUE(cat.output == input) << cat.output.size() << " bytes back";
  // A command that reads none of it: the pipe's EPIPE, never a SIGPIPE for platform-init.
  auto ignoring = run({"/bin/true"}, seconds(10), 1 << 20, input);
  EXPECT_EQ(ignoring.exit_code, 0);
  auto cut = run({"/bin/sh", "-c", "head -c 100000 /dev/zero"}, seconds(10), 1000);
  EXPECT_EQ(cut.output.size(), 1000u);
  EXPECT_TRUE(cut.truncated);
  EXPECT_EQ(cut.exit_code, 0);
}

TEST_F(ControlLineTest, ACommandPastItsTimeoutIsKilledWithWhatItStarted) {
  const auto at = steady_clock::now();
  auto r = run({"/bin/sh", "-c", "echo started; sleep 30 & wait"}, milliseconds(300));
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.output, "started\n");
  EXPECT_LT(steady_clock::now() - at, seconds(5));
  // One that closes its output and runs on is answered when it ends.
  auto quiet = run({"/bin/sh", "-c", "exec >&- 2>&-; sleep 0.3"});
  EXPECT_EQ(quiet.exit_code, 0);
  EXPECT_EQ(quiet.output, "");
}

TEST_F(ControlLineTest, SignalsReachTheProcessAndBadRequestsAreRefused) {
  ASSERT_TRUE(host_->send("signal 15\n"));
  std::optional<int> status;
  for (int i = 0; i < 200 && !status; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
    status = guest_->ended(process_);
  }
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFSIGNALED(*status));
  EXPECT_EQ(WTERMSIG(*status), 15);
  // A newline cannot cross the line inside an argument: refused before anything is sent.
  auto nl = run({"/bin/echo", "a\nb"});
  EXPECT_EQ(nl.exit_code, -1);
  EXPECT_NE(nl.output.find("newline"), std::string::npos) << nl.output;
  EXPECT_EQ(run({}).output, "nothing to run");
  // The line still works after both.
  EXPECT_EQ(run({"/bin/true"}).exit_code, 0);
}

TEST(ControlLineBroken, AGuestThatGoesAwaySaysSoAtOnce) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  agent::VmControl host(sv[0]);
  ::close(sv[1]);
  const auto at = steady_clock::now();
  auto r = host.run({"/bin/true"}, {}, seconds(10), 4096, {});
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_FALSE(r.timed_out);
  EXPECT_LT(steady_clock::now() - at, seconds(2));
  EXPECT_TRUE(host.broken());
}

// A command an earlier connection started may answer on the next one (the agent restarted, or the line
// broke): each connection's tags are its own, so that answer never passes for a new command's.
TEST(ControlLineTags, NoTwoConnectionsShareATag) {
  std::vector<std::string> tags;
  for (int i = 0; i < 2; ++i) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ::fcntl(sv[1], F_SETFL, O_NONBLOCK);
    auto host = std::make_unique<agent::VmControl>(sv[0]);
    std::thread asking([&] { host->run({"/bin/true"}, {}, milliseconds(50), 4096, {}); });
    std::string got;
    for (int tries = 0; tries < 200 && got.find("run-end ") == std::string::npos; ++tries) {
      char buf[4096];
      const ssize_t n = ::read(sv[1], buf, sizeof buf);
      if (n > 0) got.append(buf, static_cast<std::size_t>(n));
      else std::this_thread::sleep_for(milliseconds(5));
    }
    asking.join();
    host.reset();
    ::close(sv[1]);
    EXPECT_EQ(got.rfind("\n", 0), 0u) << "a connection begins with an empty line";
    const auto at = got.find("run-begin ");
    ASSERT_NE(at, std::string::npos) << got;
    tags.push_back(got.substr(at + 10, got.find('\n', at) - at - 10));
  }
  EXPECT_NE(tags[0], tags[1]);
}

// Sessions (`platform exec -i/-it` in a microVM) over the same line: output streams as it comes,
// input as it is written, on a terminal when asked, with the command's exit status at the end.
namespace {

// Reads the session's output until it holds `text` (true), its end, or 10 s.
bool read_until(agent::Session& s, std::string& got, const std::string& text) {
  const auto deadline = steady_clock::now() + seconds(10);
  while (got.find(text) == std::string::npos && steady_clock::now() < deadline) {
    pollfd p{s.fd(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[65536];
    const auto n = ::read(s.fd(), buf, sizeof buf);
    if (n == 0) break;
    if (n > 0) got.append(buf, static_cast<std::size_t>(n));
  }
  return got.find(text) != std::string::npos;
}

void type(agent::Session& s, const std::string& keys) { ASSERT_EQ(::write(s.fd(), keys.data(), keys.size()), static_cast<ssize_t>(keys.size())); }

}  // namespace

TEST_F(ControlLineTest, ASessionStreamsBothWaysAndEndsWithItsStatus) {
  auto s = session({"/bin/sh", "-c", "while read -r line; do echo \"got $line\"; done; echo done; exit 4"});
  std::string got;
  type(*s, "one\n");
  EXPECT_TRUE(read_until(*s, got, "got one\n")) << got;  // an answer before its input has ended
  type(*s, "two\n");
  EXPECT_TRUE(read_until(*s, got, "got two\n")) << got;
  s->end_input();
  EXPECT_TRUE(read_until(*s, got, "done\n")) << got;
  EXPECT_EQ(s->wait(seconds(10)), 4);
  char c;
  EXPECT_EQ(::read(s->fd(), &c, 1), 0);  // then the end of its output
  EXPECT_EQ(run({"/bin/echo", "still"}).output, "still\n");  // the line serves commands beside it all along
}

TEST_F(ControlLineTest, ASessionOnATerminalHasItsSizeResizesAndCtrlC) {
  auto s = session({"/bin/sh", "-c", "stty size; trap 'echo interrupted; exit 3' INT; read x; echo got:$x; stty size;"
                                     " while :; do sleep 0.1; done"},
                   true, 30, 90);
  std::string got;
  EXPECT_TRUE(read_until(*s, got, "30 90")) << got;
  s->resize(40, 100);
  type(*s, "abc\r");  // a terminal: carriage return ends the line, and it echoes what was typed
  EXPECT_TRUE(read_until(*s, got, "got:abc")) << got;
  EXPECT_TRUE(read_until(*s, got, "40 100")) << got;
  type(*s, "\x03");  // Ctrl-C: SIGINT to the command, its terminal's foreground
  EXPECT_TRUE(read_until(*s, got, "interrupted")) << got;
  EXPECT_EQ(s->wait(seconds(10)), 3);
}

TEST_F(ControlLineTest, ASlowReaderHoldsASessionBackAndLosesNothing) {
  // 3 MB, well past the guest's first window: it sends more only as the reader takes it.
  auto s = session({"/bin/sh", "-c", "head -c 3000000 /dev/zero; echo; echo end"});
  std::this_thread::sleep_for(milliseconds(500));  // nobody reads meanwhile
  EXPECT_EQ(run({"/bin/echo", "health"}).output, "health\n");  // and the line still serves
  std::string got;
  EXPECT_TRUE(read_until(*s, got, "\nend\n"));
  EXPECT_EQ(got.size(), 3000000u + 5u);
  EXPECT_EQ(s->wait(seconds(10)), 0);
}

TEST_F(ControlLineTest, AKilledSessionEndsAndOneThatCannotStartSaysWhy) {
  auto s = session({"/bin/sleep", "60"});
  const auto at = steady_clock::now();
  s->kill();
  EXPECT_EQ(s->wait(seconds(10)), 128 + SIGKILL);
  EXPECT_LT(steady_clock::now() - at, seconds(5));
  auto missing = session({"/nonexistent/program"});
  EXPECT_EQ(missing->wait(seconds(10)), 127);
  // A new connection (its first line is empty: the agent restarted) ends the sessions of the last one,
  // which nobody relays any more.
  auto orphan = session({"/bin/sleep", "60"});
  std::this_thread::sleep_for(milliseconds(100));
  host_->send("\n");
  EXPECT_EQ(orphan->wait(seconds(10)), 128 + SIGKILL);
}
