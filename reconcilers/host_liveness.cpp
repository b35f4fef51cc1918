#include "reconcilers/host_liveness.h"

#include <spdlog/spdlog.h>

#include "api/hosts.h"
#include "api/ipam.h"
#include "engine/db.h"

namespace platform::reconcilers {

HostLiveness::HostLiveness(std::string conninfo, std::chrono::milliseconds grace, std::chrono::milliseconds period)
    : conninfo_(std::move(conninfo)), grace_(grace), period_(period) {}

void HostLiveness::run() {
  db::Pool pool(conninfo_, 1, "platform-host-liveness");
  std::unique_lock lock(mu_);
  auto next_meter = std::chrono::steady_clock::now();
  while (!stopping_) {
    lock.unlock();
    try {
      auto down = pool.transact([&](pqxx::work& tx) { return api::mark_silent_hosts_down(tx, grace_); });
      for (const auto& id : down) spdlog::warn("host {} is down: no heartbeat within {} ms", id, grace_.count());
      marked_down_ += static_cast<int>(down.size());
      // The same housekeeping pass records the priced addresses' usage hours, once a minute, and drops
      // exec requests (and their output) an hour old, and sessions that ended (or that neither side has
      // asked about for ten minutes) with their unread bytes: the event log keeps who ran what and how
      // it ended.
      if (std::chrono::steady_clock::now() >= next_meter) {
        pool.transact([&](pqxx::work& tx) { return api::meter_usage(tx); });
        pool.transact([&](pqxx::work& tx) {
          tx.exec("DELETE FROM core.exec_requests WHERE requested_at < now() - interval '1 hour'");
          tx.exec("DELETE FROM core.exec_sessions WHERE finished_at < now() - interval '10 minutes'"
                  " OR greatest(client_seen_at, agent_seen_at) < now() - interval '10 minutes'");
          tx.exec("DELETE FROM core.exec_session_chunks c WHERE NOT EXISTS"
                  " (SELECT 1 FROM core.exec_sessions s WHERE s.id = c.session_id)");
        });
        next_meter = std::chrono::steady_clock::now() + std::chrono::minutes(1);
      }
    } catch (const std::exception& e) {
      spdlog::warn("host liveness: {}", e.what());
    }
    lock.lock();
    cv_.wait_for(lock, period_, [&] { return stopping_; });
  }
}

void HostLiveness::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
}

}  // namespace platform::reconcilers
