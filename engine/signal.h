#pragma once
// A wake-up counter shared between the LISTEN dispatcher and the workers that catch up by cursor.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace platform {

class Signal {
 public:
  void notify() {
    {
      std::lock_guard lock(mu_);
      ++generation_;
    }
    cv_.notify_all();
  }
  std::uint64_t generation() const {
    std::lock_guard lock(mu_);
    return generation_;
  }
  // Returns when the generation moved past `seen` or the timeout passed; returns the current generation.
  std::uint64_t wait_for(std::uint64_t seen, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return generation_ != seen; });
    return generation_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t generation_ = 0;
};

}  // namespace platform
