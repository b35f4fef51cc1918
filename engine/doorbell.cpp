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
  {
    std::lock_guard lock(mu_);
    pending_ = true;
    if (!thread_.joinable() && !stopping_) thread_ = std::thread([this] { run(); });
  }
  cv_.notify_one();
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
    } else if (!stopping_) {
      pending_ = true;  // try again shortly; the rings so far are still owed a NOTIFY
      cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_; });
    }
  }
}

}  // namespace platform::db
