#include "agent/init/control_line.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>

namespace platform::init {

namespace {

long now_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

constexpr std::size_t kMaxLine = 64 * 1024;          // a longer line is nonsense: dropped
constexpr std::size_t kMaxInput = 1024 * 1024;       // stdin of one command
constexpr std::size_t kMaxOutput = 2 * 1024 * 1024;  // output of one command
constexpr std::size_t kMaxPending = 64;              // commands being described
constexpr std::size_t kFirstWindow = 256 * 1024;     // a session's output before the host grants more
constexpr std::size_t kMaxQueued = 256 * 1024;       // answers queued for the line: read no more output
constexpr std::size_t kMaxUnread = 4 * 1024 * 1024;  // a session's input its command has not read

// SIGKILL to a command and whatever it started (its process group), and to the command itself: until
// its child side has called setsid() there is no such group yet.
void kill_run(pid_t pid) {
  ::kill(-pid, SIGKILL);
  ::kill(pid, SIGKILL);
}

}  // namespace

bool base64_decode(const std::string& text, std::string& out) {
  unsigned acc = 0;
  int bits = 0;
  for (char ch : text) {
    int v;
    if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
    else if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
    else if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
    else if (ch == '+') v = 62;
    else if (ch == '/') v = 63;
    else if (ch == '=') break;
    else return false;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return true;
}

ControlLine::ControlLine(int fd, pid_t process, Spawn spawn) : fd_(fd), process_(process), spawn_(std::move(spawn)) {}

void ControlLine::add_polls(std::vector<pollfd>& fds) const {
  const int line = now_ms() < away_until_ ? -1 : fd_;
  fds.push_back({line, static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0});
  for (const auto& r : runs_) {
    // A session's output only while the host takes more and the line is not backed up.
    const bool take = !r.stream || (r.window > 0 && out_.size() - out_at_ < kMaxQueued);
    fds.push_back({take ? r.out : -1, POLLIN, 0});
    fds.push_back({r.in >= 0 && r.input_at < r.input.size() ? r.in : -1, POLLOUT, 0});
  }
}

int ControlLine::poll_timeout_ms() const {
  const long now = now_ms();
  long soonest = away_until_ > now ? away_until_ : -1;
  for (const auto& r : runs_)
    if (r.deadline > 0) soonest = soonest < 0 ? r.deadline : std::min(soonest, r.deadline);
  return soonest < 0 ? -1 : static_cast<int>(std::max(0L, soonest - now));
}

void ControlLine::handle(const pollfd* fds, std::size_t n) {
  // The commands' pipes first (their entries follow the line's, in the order of runs_).
  for (std::size_t i = 0; i < runs_.size() && 2 + 2 * i < n; ++i) {
    if (fds[1 + 2 * i].revents) drain(runs_[i]);
    if (fds[2 + 2 * i].revents) feed(runs_[i]);
  }
  if (n > 0 && fds[0].fd >= 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
    char buf[4096];
    ssize_t got;
    while ((got = ::read(fd_, buf, sizeof buf)) > 0) in_.append(buf, static_cast<std::size_t>(got));
    if (got == 0) away_until_ = now_ms() + 1000;  // the agent is not connected (it connects on first use)
    for (std::size_t nl; (nl = in_.find('\n')) != std::string::npos;) {
      auto line = in_.substr(0, nl);
      in_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      command(line);
    }
    if (in_.size() > kMaxLine) in_.clear();
  }
  const long now = now_ms();
  for (std::size_t i = 0; i < runs_.size();) {
    if (runs_[i].deadline == 0 || now < runs_[i].deadline) {
      ++i;
      continue;
    }
    kill_run(runs_[i].pid);
    int status = 0;
    ::waitpid(runs_[i].pid, &status, 0);
    finish(i, -1, true);
  }
  flush();
}

void ControlLine::command(const std::string& line) {
  if (line.empty()) {  // a new connection's first line: what is still queued was for the one before
    out_.clear();
    out_at_ = 0;
    // So were its sessions: nobody relays them any more (their commands would linger in the VM).
    for (const auto& r : runs_)
      if (r.stream) kill_run(r.pid);
    return;
  }
  const auto sp = line.find(' ');
  const auto key = line.substr(0, sp);
  const auto rest = sp == std::string::npos ? std::string() : line.substr(sp + 1);
  if (key == "signal") {
    ::kill(process_, std::atoi(rest.c_str()));
    return;
  }
  if (key.rfind("run-", 0) != 0) return;  // an unknown command: ignored
  const auto sp2 = rest.find(' ');
  const auto tag = rest.substr(0, sp2);
  const auto value = sp2 == std::string::npos ? std::string() : rest.substr(sp2 + 1);
  if (tag.empty()) return;
  if (key == "run-input" || key == "run-eof" || key == "run-resize" || key == "run-kill" || key == "run-window")
    return session_command(key, tag, value);
  if (key == "run-begin") {
    if (pending_.size() >= kMaxPending) return answer(tag, -1, false, false, "too many commands being described");
    pending_[tag] = Pending{};
    return;
  }
  auto it = pending_.find(tag);
  if (it == pending_.end()) return;  // not begun (or answered already): nothing to add to
  Pending& p = it->second;
  if (key == "run-argv") {
    p.argv.push_back(value);
  } else if (key == "run-env") {
    p.env.push_back(value);
  } else if (key == "run-timeout") {
    p.timeout_ms = std::max(1L, std::atol(value.c_str()));
  } else if (key == "run-max-output") {
    p.max_output = std::min<std::size_t>(kMaxOutput, std::strtoul(value.c_str(), nullptr, 10));
  } else if (key == "run-stdin") {
    if (!base64_decode(value, p.input) || p.input.size() > kMaxInput) {
      pending_.erase(it);
      return answer(tag, -1, false, false, "stdin is not base64, or larger than 1 MiB");
    }
  } else if (key == "run-stream") {
    p.stream = true;
  } else if (key == "run-tty") {
    p.stream = true;
    std::sscanf(value.c_str(), "%d %d", &p.rows, &p.cols);
    p.rows = std::clamp(p.rows, 1, 1000);
    p.cols = std::clamp(p.cols, 1, 1000);
  } else if (key == "run-end") {
    Pending ready = std::move(p);
    pending_.erase(it);
    start(tag, std::move(ready));
  }
}

void ControlLine::start(const std::string& tag, Pending p) {
  if (p.argv.empty()) return answer(tag, -1, false, false, "nothing to run");
  if (runs_.size() >= kMaxRuns) return answer(tag, -1, false, false, "too many commands running in this VM");
  if (p.stream) return start_session(tag, std::move(p));
  int out[2], in[2] = {-1, -1};
  if (::pipe2(out, O_CLOEXEC) != 0) return answer(tag, -1, false, false, std::string("pipe: ") + std::strerror(errno));
  if (!p.input.empty() && ::pipe2(in, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return answer(tag, -1, false, false, std::string("pipe: ") + std::strerror(errno));
  }
  const pid_t pid = spawn_(p.argv, p.env, in[0], out[1]);
  ::close(out[1]);
  if (in[0] >= 0) ::close(in[0]);
  if (pid < 0) {
    ::close(out[0]);
    if (in[1] >= 0) ::close(in[1]);
    return answer(tag, -1, false, false, std::string("fork: ") + std::strerror(errno));
  }
  ::fcntl(out[0], F_SETFL, O_NONBLOCK);
  if (in[1] >= 0) ::fcntl(in[1], F_SETFL, O_NONBLOCK);
  Run r;
  r.tag = tag;
  r.pid = pid;
  r.out = out[0];
  r.in = in[1];
  r.deadline = now_ms() + p.timeout_ms;
  r.max_output = p.max_output;
  r.input = std::move(p.input);
  runs_.push_back(std::move(r));
  feed(runs_.back());
}

// A session: on a new terminal (its replica side the command's stdin, stdout and stderr, and its
// controlling terminal) or on pipes; no timeout; output streams within the host's window.
void ControlLine::start_session(const std::string& tag, Pending p) {
  auto fail = [&](const char* what) { answer(tag, -1, false, false, std::string(what) + ": " + std::strerror(errno)); };
  int in = -1, out = -1, child_in = -1, child_out = -1;
  const bool tty = p.rows > 0;
  if (tty) {
    out = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    char name[64];
    if (out < 0 || ::grantpt(out) != 0 || ::unlockpt(out) != 0 || ::ptsname_r(out, name, sizeof name) != 0) {
      if (out >= 0) ::close(out);
      return fail("a terminal");
    }
    child_in = child_out = ::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (child_in < 0) {
      ::close(out);
      return fail(name);
    }
    winsize ws{};
    ws.ws_row = static_cast<unsigned short>(p.rows);
    ws.ws_col = static_cast<unsigned short>(p.cols);
    ::ioctl(out, TIOCSWINSZ, &ws);
    in = out;
  } else {
    int o[2], i[2];
    if (::pipe2(o, O_CLOEXEC) != 0) return fail("pipe");
    if (::pipe2(i, O_CLOEXEC) != 0) {
      ::close(o[0]);
      ::close(o[1]);
      return fail("pipe");
    }
    out = o[0];
    child_out = o[1];
    child_in = i[0];
    in = i[1];
  }
  const pid_t pid = spawn_(p.argv, p.env, child_in, child_out);
  ::close(child_out);
  if (child_in != child_out) ::close(child_in);
  if (pid < 0) {
    ::close(out);
    if (in != out) ::close(in);
    return fail("fork");
  }
  ::fcntl(out, F_SETFL, O_NONBLOCK);
  if (in != out) ::fcntl(in, F_SETFL, O_NONBLOCK);
  Run r;
  r.tag = tag;
  r.pid = pid;
  r.out = out;
  r.in = in;
  r.stream = true;
  r.tty = tty;
  r.window = kFirstWindow;
  runs_.push_back(std::move(r));
}

void ControlLine::session_command(const std::string& key, const std::string& tag, const std::string& value) {
  auto it = std::find_if(runs_.begin(), runs_.end(), [&](const Run& r) { return r.tag == tag && r.stream; });
  if (it == runs_.end()) return;  // ended already: its result is on its way
  Run& r = *it;
  if (key == "run-input") {
    if (r.input_at > 65536) {  // what was written goes
      r.input.erase(0, r.input_at);
      r.input_at = 0;
    }
    if (!base64_decode(value, r.input) || r.input.size() - r.input_at > kMaxUnread) kill_run(r.pid);
    feed(r);
  } else if (key == "run-eof") {
    if (r.tty) {
      r.input.push_back('\x04');  // Ctrl-D, as typed: the end of input to a reader on a terminal
    } else {
      r.eof = true;
    }
    feed(r);
  } else if (key == "run-resize" && r.tty) {
    winsize ws{};
    int rows = 0, cols = 0;
    std::sscanf(value.c_str(), "%d %d", &rows, &cols);
    ws.ws_row = static_cast<unsigned short>(std::clamp(rows, 1, 1000));
    ws.ws_col = static_cast<unsigned short>(std::clamp(cols, 1, 1000));
    ::ioctl(r.out, TIOCSWINSZ, &ws);  // the kernel sends SIGWINCH to its foreground process group
  } else if (key == "run-kill") {
    kill_run(r.pid);
  } else if (key == "run-window") {
    r.window += std::min<std::size_t>(std::strtoul(value.c_str(), nullptr, 10), 16 * 1024 * 1024);
  }
}

void ControlLine::drain(Run& r) {
  if (r.stream) return stream_out(r, false);
  char buf[16384];
  ssize_t n = -1;
  while (r.out >= 0 && (n = ::read(r.out, buf, sizeof buf)) > 0) {
    const auto room = r.max_output - std::min(r.max_output, r.output.size());
    const auto keep = std::min(room, static_cast<std::size_t>(n));
    r.output.append(buf, keep);
    if (keep < static_cast<std::size_t>(n)) r.truncated = true;
  }
  if (r.out >= 0 && n == 0) {  // every writer closed it (the command may run on): poll would say so forever
    ::close(r.out);
    r.out = -1;
  }
}

// A session's output as "run-output" answers: what the window allows, or (`all`, at its end)
// everything left. A terminal nobody holds any more reads as EIO: its end, as EOF is a pipe's.
void ControlLine::stream_out(Run& r, bool all) {
  char buf[16384];
  while (r.out >= 0 && (all || r.window > 0)) {
    const auto want = all ? sizeof buf : std::min(sizeof buf, r.window);
    const ssize_t n = ::read(r.out, buf, want);
    if (n > 0) {
      out_ += "run-output " + r.tag + " " + std::to_string(n) + "\n";
      out_.append(buf, static_cast<std::size_t>(n));
      r.window -= std::min(r.window, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    ::close(r.out);  // EOF or EIO
    if (r.in == r.out) r.in = -1;
    r.out = -1;
  }
}

// Writes what the pipe takes of the command's stdin; closes it once all is written (or the command
// stopped reading: EPIPE, as SIGPIPE is ignored here). A session's stays open for more, until its end.
void ControlLine::feed(Run& r) {
  while (r.in >= 0 && r.input_at < r.input.size()) {
    const ssize_t n = ::write(r.in, r.input.data() + r.input_at, r.input.size() - r.input_at);
    if (n > 0) {
      r.input_at += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (r.stream) r.eof = true;  // it stopped reading: nothing more will reach it
    break;
  }
  if (r.stream && (!r.eof || r.tty)) return;  // a terminal's stays: it is the output's too
  if (r.in >= 0) {
    ::close(r.in);
    r.in = -1;
  }
}

bool ControlLine::reaped(pid_t pid, int status) {
  for (std::size_t i = 0; i < runs_.size(); ++i) {
    if (runs_[i].pid != pid) continue;
    finish(i, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), false);
    flush();
    return true;
  }
  return false;
}

void ControlLine::finish(std::size_t i, int code, bool timed_out) {
  Run& r = runs_[i];
  // What it wrote before it ended (a child it left behind may still hold the pipe: not waited for).
  if (r.stream) stream_out(r, true);
  else drain(r);
  if (r.out >= 0) ::close(r.out);
  if (r.in >= 0 && r.in != r.out) ::close(r.in);
  answer(r.tag, code, timed_out, r.truncated, r.stream ? std::string() : r.output);
  runs_.erase(runs_.begin() + static_cast<std::ptrdiff_t>(i));
}

void ControlLine::answer(const std::string& tag, int code, bool timed_out, bool truncated, const std::string& output) {
  out_ += "run-result " + tag + " " + std::to_string(code) + " " + (timed_out ? "1" : "0") + " " + (truncated ? "1" : "0") +
          " " + std::to_string(output.size()) + "\n";
  out_ += output;
}

// As much of the answers as the line takes now; the rest when it can take more (POLLOUT).
void ControlLine::flush() {
  while (out_at_ < out_.size()) {
    const ssize_t n = ::write(fd_, out_.data() + out_at_, out_.size() - out_at_);
    if (n > 0) {
      out_at_ += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    break;  // the line is gone: nobody to answer
  }
  out_.clear();
  out_at_ = 0;
}

void ControlLine::kill_all() {
  for (const auto& r : runs_) kill_run(r.pid);
}

}  // namespace platform::init
