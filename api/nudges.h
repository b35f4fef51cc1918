#pragma once
// Wake-ups by key, for long polls that wait on something other than the event log: an exec session's
// input or output (NOTIFY platform_sessions '<session>:i' / '<session>:o', see api/handlers_sessions.cpp).
// A poll holds its key for as long as it lives (Hold), takes the key's generation before it looks, then
// waits until the generation moves or the deadline passes, so a nudge between the look and the wait is
// never lost. A key is forgotten when no poll holds it.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

namespace platform::api {

class Nudges {
  struct Key {
    std::uint64_t generation = 0;
    int holders = 0;
    std::set<std::shared_ptr<boost::asio::steady_timer>> waiters;
  };

 public:
  class Hold {
   public:
    Hold(Nudges& n, std::string key);
    ~Hold();
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    std::uint64_t generation() const;
    // Returns once the generation is past `seen` or `deadline` passed. Run it on a strand (the timer it
    // waits on is woken there).
    boost::asio::awaitable<void> wait(std::uint64_t seen, std::chrono::steady_clock::time_point deadline);

   private:
    Nudges& n_;
    std::string key_;
  };

  // Wakes the polls holding `key`; "" wakes every poll (after the LISTEN connection reconnected, any
  // notification may have been missed).
  void nudge(const std::string& key);
  std::size_t keys() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, Key> keys_;
};

}  // namespace platform::api
