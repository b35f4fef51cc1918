#pragma once
// Runs a program on a terminal of its own (forkpty), for tests of what `platform exec -it` does at a
// keyboard: read what it shows, type keys, resize the window, and collect its exit status. Every wait is
// bounded; the program is killed if it is still running when the PtyRun goes.
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace platform::e2e {

class PtyRun {
 public:
  PtyRun(std::vector<std::string> argv, int rows, int cols) {
    winsize ws{};
    ws.ws_row = static_cast<unsigned short>(rows);
    ws.ws_col = static_cast<unsigned short>(cols);
    pid_ = ::forkpty(&fd_, nullptr, nullptr, &ws);
    if (pid_ == 0) {
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~PtyRun() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) ::close(fd_);
  }
  PtyRun(const PtyRun&) = delete;
  PtyRun& operator=(const PtyRun&) = delete;

  // Reads until what it showed holds `text` (true) or `limit` passed (false).
  bool wait_for(const std::string& text, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (out_.find(text) == std::string::npos) {
      if (std::chrono::steady_clock::now() >= deadline || !read_some(deadline)) return out_.find(text) != std::string::npos;
    }
    return true;
  }
  void type(const std::string& keys) { [[maybe_unused]] auto n = ::write(fd_, keys.data(), keys.size()); }
  // The kernel sends SIGWINCH to the program, as a terminal emulator's resize does.
  void resize(int rows, int cols) {
    winsize ws{};
    ws.ws_row = static_cast<unsigned short>(rows);
    ws.ws_col = static_cast<unsigned short>(cols);
    ::ioctl(fd_, TIOCSWINSZ, &ws);
  }
  // Reads to its end and answers its exit status (128 + N when signal N ended it); -1 after `limit`.
  int finish(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (read_some(deadline)) {
    }
    while (!status_ && std::chrono::steady_clock::now() < deadline) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      else std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return status_.value_or(-1);
  }
  const std::string& output() const { return out_; }

 private:
  // False at its end (EOF, or EIO once nobody holds the terminal) or at the deadline.
  bool read_some(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 200))) <= 0) return true;
    char buf[4096];
    const auto n = ::read(fd_, buf, sizeof buf);
    if (n <= 0) return false;
    out_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  std::string out_;
  std::optional<int> status_;
};

}  // namespace platform::e2e
