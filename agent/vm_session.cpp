#include "agent/vm_session.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "agent/vm_control.h"
#include "engine/crypto.h"
#include "engine/error.h"

namespace platform::agent {
namespace {

constexpr std::size_t kInputChunk = 3072;    // raw bytes per run-input line (4 KiB of base64)
constexpr std::size_t kGrantEvery = 16384;   // output window handed back to the guest at a time

class VmSession final : public Session {
 public:
  VmSession(std::shared_ptr<VmControl> line, std::string tag, int outer, int inner)
      : line_(std::move(line)), tag_(std::move(tag)), outer_(outer), inner_(inner), relay_([this] { relay(); }) {}
  ~VmSession() override {
    if (!wait(std::chrono::milliseconds(0))) kill();
    stop_ = true;
    relay_.join();
    line_->close_stream(tag_);
    ::close(outer_);
    ::close(inner_);
  }
  int fd() const override { return outer_; }
  // The relay sends run-eof once it has passed on everything written before.
  void end_input() override { ::shutdown(outer_, SHUT_WR); }
  void resize(int rows, int cols) override { line_->send(fmt::format("run-resize {} {} {}\n", tag_, rows, cols)); }
  void kill() override { line_->send("run-kill " + tag_ + "\n"); }
  std::optional<int> wait(std::chrono::milliseconds timeout) override {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return code_.has_value(); });
    return code_;
  }

 private:
  void relay() {
    std::string pending;  // from the guest, not yet taken by the agent's reader
    std::size_t granted = 0;
    bool input_open = true, ended = false;
    int code = -1;
    char buf[kInputChunk];
    while (!stop_) {
      // Woken by the guest's output, or at once by input to pass on (unless another caller reads the
      // line: then within 20 ms).
      line_->pump(std::chrono::milliseconds(20), input_open && !ended ? inner_ : -1);
      ended = line_->take_output(tag_, pending, code);
      while (!pending.empty()) {
        const auto n = ::send(inner_, pending.data(), pending.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n <= 0) break;  // the agent's reader is behind: the window holds the guest back
        pending.erase(0, static_cast<std::size_t>(n));
        granted += static_cast<std::size_t>(n);
      }
      if (granted >= kGrantEvery && !ended) {
        line_->send(fmt::format("run-window {} {}\n", tag_, granted));
        granted = 0;
      }
      while (input_open && !ended) {
        const auto n = ::recv(inner_, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) break;  // nothing more now
        if (n == 0) {
          line_->send("run-eof " + tag_ + "\n");
          input_open = false;
          break;
        }
        line_->send("run-input " + tag_ + " " + base64_encode(std::string_view(buf, static_cast<std::size_t>(n))) + "\n");
      }
      if (ended && pending.empty()) {
        ::shutdown(inner_, SHUT_WR);  // the agent's reader sees the end of the output
        std::lock_guard lock(mu_);
        code_ = code >= 0 ? code : -1;
        cv_.notify_all();
        return;
      }
    }
  }

  std::shared_ptr<VmControl> line_;
  std::string tag_;
  int outer_, inner_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<int> code_;
  std::thread relay_;  // last: starts once everything above is set
};

}  // namespace

std::unique_ptr<Session> open_vm_session(std::shared_ptr<VmControl> line, const std::vector<std::string>& argv,
                                         const std::map<std::string, std::string>& env, bool tty, int rows, int cols) {
  if (!line) throw PlatformError(ErrorCode::unavailable, "the VM's control line is not open (is it running?)", "");
  std::string why;
  const auto tag = line->open_stream(argv, env, tty, rows, cols, why);
  if (tag.empty()) throw PlatformError(ErrorCode::unavailable, "cannot start the session: " + why, "");
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    line->send("run-kill " + tag + "\n");
    line->close_stream(tag);
    throw PlatformError(ErrorCode::internal, "cannot start the session: a socket pair", "");
  }
  ::fcntl(sv[0], F_SETFL, O_NONBLOCK);
  return std::make_unique<VmSession>(std::move(line), tag, sv[0], sv[1]);
}

}  // namespace platform::agent
