#pragma once
// The host liveness reconciler: a host whose agent has been silent for longer than the grace period is
// marked down, with an event saying since when and why. (Rescheduling its instances joins with the
// scheduler.) Safe to run in several platformd processes: each host goes down once. Once a minute the
// same pass records the usage hours of priced addresses (api/ipam.h meter_usage; each hour once).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

namespace platform::reconcilers {

class HostLiveness {
 public:
  HostLiveness(std::string conninfo, std::chrono::milliseconds grace,
               std::chrono::milliseconds period = std::chrono::seconds(1));
  void run();   // until stop(); database errors are logged and retried
  void stop();
  int marked_down() const { return marked_down_; }

 private:
  std::string conninfo_;
  std::chrono::milliseconds grace_, period_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::atomic<int> marked_down_{0};
};

}  // namespace platform::reconcilers
