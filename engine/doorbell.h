#pragma once
// The after-commit wake-up. A NOTIFY inside a writing transaction holds PostgreSQL's global notify
// lock through the commit flush, so notifying writers commit one at a time. Pool connections instead
// set `platform.notify_after_commit = on` (append_events then skips its NOTIFY) and ring this doorbell
// once a write transaction has committed. One thread and one connection per doorbell send the NOTIFY;
// rings that arrive while one is in flight coalesce into a single next NOTIFY, and under a stream of
// commits NOTIFYs are at least kMinInterval apart (a ring after a quiet spell is sent at once).
//
// If the process dies between a commit and the NOTIFY, readers still find the events: every reader
// also polls on a safety timer (about a second). NOTIFY is only ever a wake-up.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace platform::db {

class Doorbell {
 public:
  Doorbell(std::string conninfo, std::string channel = "platform_events");
  ~Doorbell();  // sends a last NOTIFY when a ring is pending, then stops
  Doorbell(const Doorbell&) = delete;
  Doorbell& operator=(const Doorbell&) = delete;

  static constexpr std::chrono::microseconds kMinInterval{2000};  // 1 ms cost 10-15 % of one writer's append rate (docs/event-log.md)

  void ring();  // never blocks on the database; starts the sender thread on first use
  std::uint64_t sent() const;  // NOTIFYs sent so far

 private:
  void run();

  std::string conninfo_, channel_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false, stopping_ = false;
  std::uint64_t sent_ = 0;
  std::chrono::steady_clock::time_point last_sent_{};
  std::thread thread_;
};

}  // namespace platform::db
