#include "agent/vm_control.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "engine/crypto.h"

namespace platform::agent {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t kStdinChunk = 3072;           // raw bytes per run-stdin line (4 KiB of base64)
constexpr std::size_t kMaxAnswer = 4 * 1024 * 1024;  // a longer answer is not one: the line is broken
// How long after its own timeout a command's answer may take: the guest kills it at the timeout and
// answers at once, but its output (and the part of its stdin still in the socket's buffer when the
// request was sent) has to cross the port, which moves about 1-2 MB/s: counted at 256 KB/s.
milliseconds answer_grace(std::size_t max_output, std::size_t request_bytes) {
  return milliseconds(2000) + milliseconds((max_output + std::min<std::size_t>(request_bytes, 256 * 1024)) / 256);
}

milliseconds left(Clock::time_point deadline) {
  return std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
}

}  // namespace

VmControl::VmControl(int fd)
    : fd_(fd),
      // Tags unique across connections (and agent restarts): a command an earlier connection started
      // may still answer on this one, and must not pass for one of ours.
      tag_prefix_(fmt::format("{:x}.{:x}.", std::chrono::system_clock::now().time_since_epoch().count(),
                              reinterpret_cast<std::uintptr_t>(this))) {
  // An empty line: ends whatever line an earlier connection left half-written in the guest, and tells
  // it to drop what it still had queued for that one (part of an answer would be garbage here).
  send("\n");
}

VmControl::~VmControl() { ::close(fd_); }

bool VmControl::broken() const {
  std::lock_guard lock(mu_);
  return broken_;
}

bool VmControl::send(const std::string& line) {
  std::lock_guard wlock(write_mu_);
  // The guest reads the line as fast as its serial port goes; a guest that stopped reading for this
  // long is not coming back, and a half-written command would garble the line: it is broken then.
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  for (std::size_t at = 0; at < line.size();) {
    const ssize_t n = ::send(fd_, line.data() + at, line.size() - at, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      at += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && left(deadline).count() > 0) {
      pollfd p{fd_, POLLOUT, 0};
      ::poll(&p, 1, static_cast<int>(std::min<long>(left(deadline).count(), 1000)));
      continue;
    }
    std::lock_guard lock(mu_);
    broken_ = true;
    why_broken_ = "cannot write to the VM's control line";
    cv_.notify_all();
    return false;
  }
  return true;
}

ExecResult VmControl::run(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                          milliseconds timeout, std::size_t max_output, const std::string& input) {
  ExecResult out;
  for (const auto& a : argv)
    if (a.find('\n') != std::string::npos) return out.output = "an argument has a newline, which the VM's control line cannot pass", out;
  for (const auto& [k, v] : env)
    if ((k + v).find('\n') != std::string::npos) return out.output = "the variable " + k + " has a newline", out;
  std::string tag;
  {
    std::lock_guard lock(mu_);
    if (broken_) return out.output = why_broken_, out;
    tag = tag_prefix_ + std::to_string(next_tag_++);
    wanted_[tag];
  }
  std::string request = "run-begin " + tag + "\n";
  for (const auto& a : argv) request += "run-argv " + tag + " " + a + "\n";
  for (const auto& [k, v] : env) request += "run-env " + tag + " " + k + "=" + v + "\n";
  request += "run-timeout " + tag + " " + std::to_string(std::max<long>(1, timeout.count())) + "\n";
  request += "run-max-output " + tag + " " + std::to_string(max_output) + "\n";
  for (std::size_t at = 0; at < input.size(); at += kStdinChunk)
    request += "run-stdin " + tag + " " + base64_encode(std::string_view(input).substr(at, kStdinChunk)) + "\n";
  request += "run-end " + tag + "\n";
  if (!send(request)) {
    std::lock_guard lock(mu_);
    wanted_.erase(tag);
    return out.output = why_broken_, out;
  }

  const auto deadline = Clock::now() + timeout + answer_grace(max_output, request.size());
  std::unique_lock lock(mu_);
  for (;;) {
    auto& a = wanted_[tag];
    if (a.done) {
      out = std::move(a.result);
      wanted_.erase(tag);
      return out;
    }
    if (broken_) {
      wanted_.erase(tag);
      return out.output = why_broken_, out;
    }
    const auto wait = std::min(left(deadline), milliseconds(200));
    if (wait.count() == 0) {
      wanted_.erase(tag);  // an answer that comes later is dropped
      out.timed_out = true;
      out.output = "the VM did not answer in time";
      return out;
    }
    read_for_all(lock, wait);
  }
}

void VmControl::read_for_all(std::unique_lock<std::mutex>& lock, milliseconds wait, int also) {
  if (reading_) {  // another caller reads for everyone; it wakes us when it parsed something
    cv_.wait_for(lock, wait);
    return;
  }
  reading_ = true;
  lock.unlock();
  pollfd p[2] = {{fd_, POLLIN, 0}, {also, POLLIN, 0}};
  char chunk[16384];
  ssize_t n = 1;
  std::string got;
  if (::poll(p, 2, static_cast<int>(wait.count())) > 0 && p[0].revents) {
    while ((n = ::recv(fd_, chunk, sizeof chunk, MSG_DONTWAIT)) > 0) got.append(chunk, static_cast<std::size_t>(n));
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) n = 1;
  }
  lock.lock();
  reading_ = false;
  buf_ += got;
  parse();
  if (n <= 0 && !broken_) {
    broken_ = true;
    why_broken_ = "the VM closed its control line (is it running?)";
  }
  cv_.notify_all();
}

std::string VmControl::open_stream(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                                   bool tty, int rows, int cols, std::string& why) {
  for (const auto& a : argv)
    if (a.find('\n') != std::string::npos) return why = "an argument has a newline, which the VM's control line cannot pass", "";
  for (const auto& [k, v] : env)
    if ((k + v).find('\n') != std::string::npos) return why = "the variable " + k + " has a newline", "";
  std::string tag;
  {
    std::lock_guard lock(mu_);
    if (broken_) return why = why_broken_, "";
    tag = tag_prefix_ + std::to_string(next_tag_++);
    streams_[tag];
  }
  std::string request = "run-begin " + tag + "\n";
  for (const auto& a : argv) request += "run-argv " + tag + " " + a + "\n";
  for (const auto& [k, v] : env) request += "run-env " + tag + " " + k + "=" + v + "\n";
  request += tty ? fmt::format("run-tty {} {} {}\n", tag, rows, cols) : "run-stream " + tag + "\n";
  request += "run-end " + tag + "\n";
  if (!send(request)) {
    close_stream(tag);
    std::lock_guard lock(mu_);
    return why = why_broken_, "";
  }
  return tag;
}

bool VmControl::take_output(const std::string& tag, std::string& into, int& exit_code) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(tag);
  if (it == streams_.end()) return true;
  into += it->second.output;
  it->second.output.clear();
  if (broken_ && !it->second.ended) {
    it->second.ended = true;
    into += "\r\n[platform: " + why_broken_ + "]\r\n";
  }
  exit_code = it->second.exit_code;
  return it->second.ended;
}

void VmControl::close_stream(const std::string& tag) {
  std::lock_guard lock(mu_);
  streams_.erase(tag);
}

void VmControl::pump(milliseconds wait, int also) {
  std::unique_lock lock(mu_);
  if (broken_) return;
  read_for_all(lock, wait, also);
}

// Whole answers out of buf_, to whoever waits for their tags; others are dropped.
void VmControl::parse() {
  for (;;) {
    const auto nl = buf_.find('\n');
    if (nl == std::string::npos) {
      if (buf_.size() > 4096) {
        broken_ = true;
        why_broken_ = "the VM's control line carries something that is not an answer";
      }
      return;
    }
    char tag[64] = {};
    int code = -1, timed_out = 0, truncated = 0;
    std::size_t length = 0;
    const auto header = buf_.substr(0, nl);
    if (header.rfind("run-output ", 0) == 0) {  // a session's output, as it comes
      if (std::sscanf(header.c_str(), "run-output %63s %zu", tag, &length) != 2 || length > kMaxAnswer) {
        broken_ = true;
        why_broken_ = "the VM's control line carries a malformed session output";
        return;
      }
      if (buf_.size() < nl + 1 + length) return;
      if (auto it = streams_.find(tag); it != streams_.end()) it->second.output.append(buf_, nl + 1, length);
      buf_.erase(0, nl + 1 + length);
      continue;
    }
    if (std::sscanf(header.c_str(), "run-result %63s %d %d %d %zu", tag, &code, &timed_out, &truncated, &length) != 5) {
      buf_.erase(0, nl + 1);  // not an answer (an older guest's, or noise): skipped
      continue;
    }
    if (length > kMaxAnswer) {
      broken_ = true;
      why_broken_ = "the VM's control line carries an answer larger than any command may give";
      return;
    }
    if (buf_.size() < nl + 1 + length) return;  // the rest is on its way
    if (auto st = streams_.find(tag); st != streams_.end()) {  // a session's end (or why it never began)
      st->second.ended = true;
      st->second.exit_code = code;
      st->second.output.append(buf_, nl + 1, length);
    } else if (auto it = wanted_.find(tag); it != wanted_.end()) {
      it->second.done = true;
      it->second.result.exit_code = code;
      it->second.result.timed_out = timed_out != 0;
      it->second.result.truncated = truncated != 0;
      it->second.result.output = buf_.substr(nl + 1, length);
    }
    buf_.erase(0, nl + 1 + length);
  }
}

}  // namespace platform::agent
