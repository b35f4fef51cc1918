#pragma once
// A name held on this machine while a process lives: the bind of an abstract unix socket (so, strictly,
// in this network namespace). The kernel frees it when the process ends, however it ends, and leaves no
// file behind. Used where two processes on one machine must not share something (a `platformd dev`'s
// address pools, a test platform's).
#include <string>

namespace platform::dev {

class MachineName {
 public:
  // Takes `name` (at most 100 bytes are used); held() says whether it was free.
  explicit MachineName(const std::string& name);
  ~MachineName();
  MachineName(MachineName&& other) noexcept;
  MachineName(const MachineName&) = delete;
  MachineName& operator=(const MachineName&) = delete;
  MachineName& operator=(MachineName&&) = delete;
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace platform::dev
