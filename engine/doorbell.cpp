#include "engine/doorbell.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>

#include "engine/db.h"

namespace platform::db {

Doorbell::Doorbell(std::string conninfo, std::string channel)
    : conninfo_(std::move(conninfo)), channel_(std::move(channel)) {}

Doorbell::~Doorbell() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Doorbell::ring() {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    wake = !pending_;  // a ring already pending has woken the sender; it will cover this one too
    pending_ = true;
    if (!thread_.joinable() && !stopping_) thread_ = std::thread([this] { run(); });
  }
  if (wake) cv_.notify_one();
}

std::uint64_t Doorbell::sent() const {
  std::lock_guard lock(mu_);
  return sent_;
}

void Doorbell::run() {
  std::unique_ptr<pqxx::connection> conn;
  int failures = 0;
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return pending_ || stopping_; });
    if (!pending_) return;  // stopping with nothing left to send
    // A ring after a quiet spell is sent at once; under a stream of commits at most one NOTIFY goes out
    // per kMinInterval, each covering every commit before it (a NOTIFY costs the server a round trip
    // and a turn on its global notify lock, as much as a small append).
    if (!stopping_) cv_.wait_until(lock, last_sent_ + kMinInterval, [&] { return stopping_; });
    pending_ = false;
    lock.unlock();
    bool ok = false;
    try {
      if (!conn || !conn->is_open()) {
        conn = connect(conninfo_, "platform-doorbell");
        conn->prepare("platform_doorbell", "SELECT pg_notify($1, 'events')");
      }
      pqxx::nontransaction tx(*conn);
      tx.exec_prepared("platform_doorbell", channel_);
      ok = true;
      failures = 0;
    } catch (const std::exception& e) {
      conn.reset();
      if (failures++ == 0) spdlog::warn("doorbell: cannot send the wake-up ({}); readers fall back to polling", e.what());
    }
    lock.lock();
    if (ok) {
      ++sent_;
      last_sent_ = std::chrono::steady_clock::now();
    } else if (!stopping_) {
      pending_ = true;  // try again shortly; the rings so far are still owed a NOTIFY
      cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_; });
    }
  }
}

}  // namespace platform::db
