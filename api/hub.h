#pragma once
// The in-memory fan-out behind event watches: one reader follows the log below the horizon (woken by
// the process's LISTEN connection) into a bounded ring; every waiting long poll is served from it and
// holds no database connection.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "engine/event_store.h"
#include "engine/signal.h"

namespace platform::api {

class Hub {
 public:
  Hub(std::string conninfo, std::size_t capacity = 20000);
  ~Hub();
  void start(Signal& wake);
  void stop();

  struct MemoryPage {
    std::vector<events::Recorded> events;
    events::Cursor next;
  };
  // Events after `after` that match, when the ring still holds everything after `after`; else nullopt.
  std::optional<MemoryPage> from_memory(events::Cursor after, const events::Filter& filter, int limit) const;
  events::Cursor head() const;

  // Suspends the calling coroutine until the head moves past `after` or the deadline passes. The caller
  // must run on a strand (or a single-threaded context).
  boost::asio::awaitable<void> wait(events::Cursor after, std::chrono::steady_clock::time_point deadline);

  std::size_t waiters() const;
  std::size_t buffered() const;
  bool ready() const;  // the reader has read the head at least once

 private:
  void run(Signal& wake);
  void wake_waiters();

  std::string conninfo_;
  std::size_t capacity_;
  mutable std::mutex mu_;
  std::deque<events::Recorded> ring_;
  events::Cursor base_;  // the ring holds every event after base_
  events::Cursor head_;
  bool ready_ = false;
  std::set<std::shared_ptr<boost::asio::steady_timer>> waiters_;
  std::atomic<bool> stopping_{false};
  Signal* wake_ = nullptr;
  std::thread thread_;
};

}  // namespace platform::api
