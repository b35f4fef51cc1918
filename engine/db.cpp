#include "engine/db.h"

#include <spdlog/spdlog.h>

#include "engine/doorbell.h"

namespace platform::db {

std::unique_ptr<pqxx::connection> connect(const std::string& conninfo, const std::string& application_name) {
  auto c = std::make_unique<pqxx::connection>(conninfo);
  pqxx::nontransaction tx(*c);
  tx.exec("SET idle_in_transaction_session_timeout = '30s'; SET TIME ZONE 'UTC'; SET application_name = " +
          tx.quote(application_name));
  return c;
}

std::string sql_rfc3339(const std::string& column) {
  return "to_char(" + column + " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
}

PlatformError translate(const std::exception& e) {
  if (auto* pe = dynamic_cast<const PlatformError*>(&e)) return *pe;
  if (auto* se = dynamic_cast<const pqxx::sql_error*>(&e)) {
    const std::string state = se->sqlstate();
    std::string msg = se->what();
    // libpqxx appends the query text; keep only the server's first line.
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    if (msg.rfind("ERROR:  ", 0) == 0) msg = msg.substr(8);
    if (state == "PW001") return {ErrorCode::version_conflict, msg, "Re-read the resource and retry with its current version."};
    if (state == "PI001") return {ErrorCode::idempotency_conflict, msg, "Retry with exactly the same request, or a new Idempotency-Key."};
    if (state == "PN001") return {ErrorCode::name_taken, msg, "Choose another name, or describe the existing resource."};
    if (state == "PN002" || state == "PN003") return {ErrorCode::not_found, msg, "List the parent's resources to see what exists."};
    if (state == "PN004") return {ErrorCode::precondition_failed, msg, "Delete the children first."};
    if (state == "PC001") return {ErrorCode::capacity, msg, "Release addresses no longer needed (platform ip release), or ask an operator to widen the pool."};
    if (state == "PC002") return {ErrorCode::precondition_failed, msg, "An operator configures pools with platformd serve --ipv6-pool, --ipv4-pool and --instance-pool."};
    if (state == "PA001") return {ErrorCode::precondition_failed, msg, "Events are never rewritten."};
    if (state == "PI002") return {ErrorCode::precondition_failed, msg, "Releases are never changed: deploy a new one or roll back."};
    if (state == "57014") return {ErrorCode::timed_out, "the database cancelled a statement that ran too long", ""};
    if (state.rfind("08", 0) == 0 || state == "57P01" || state == "57P03")
      return {ErrorCode::unavailable, "the database is unavailable: " + msg, "Retry shortly; check that PostgreSQL is running."};
    spdlog::error("database error {}: {}", state, msg);
    return {ErrorCode::internal, "internal database error (SQLSTATE " + state + ")", "Retry; if it persists, report the request id."};
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e))
    return {ErrorCode::unavailable, std::string("the database connection failed: ") + e.what(),
            "Retry shortly; check that PostgreSQL is running."};
  spdlog::error("unexpected error: {}", e.what());
  return {ErrorCode::internal, "internal error", "Retry; if it persists, report the request id."};
}

Pool::Pool(std::string conninfo, std::size_t max_size, std::string application_name)
    : conninfo_(std::move(conninfo)),
      max_size_(max_size),
      application_name_(std::move(application_name)),
      doorbell_(std::make_unique<Doorbell>(conninfo_)) {}

Pool::~Pool() = default;

void Pool::wake() { doorbell_->ring(); }

void Pool::commit_and_wake(pqxx::work& tx) {
  // On pool connections append_events leaves the NOTIFY to us. Read-only work goes through read(), so
  // nearly every transact() appends; ringing after each one costs less than asking the server whether
  // this one did (a round trip on every write), and a spare wake-up is harmless.
  tx.commit();
  doorbell_->ring();
}

Pool::Lease::~Lease() {
  if (conn_ && pool_) pool_->release(std::move(conn_));
}

Pool::Lease Pool::acquire(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(c));
    }
    if (open_ < max_size_) {
      ++open_;
      lock.unlock();
      try {
        auto c = connect(conninfo_, application_name_);
        pqxx::nontransaction(*c).exec("SET platform.notify_after_commit = on");  // see commit_and_wake
        return Lease(this, std::move(c));
      } catch (const std::exception& e) {
        std::lock_guard relock(mu_);
        --open_;
        cv_.notify_one();
        throw PlatformError(ErrorCode::unavailable, std::string("cannot connect to the database: ") + e.what(),
                            "Check that PostgreSQL is running and the connection string is right.");
      }
    }
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() && open_ >= max_size_)
      throw PlatformError(ErrorCode::unavailable, "all database connections are busy",
                          "Retry shortly; the server is overloaded.");
  }
}

void Pool::drop_idle() {
  std::lock_guard lock(mu_);
  open_ -= idle_.size();
  idle_.clear();
  cv_.notify_all();
}

void Pool::release(std::unique_ptr<pqxx::connection> c) {
  std::lock_guard lock(mu_);
  if (c->is_open()) {
    idle_.push_back(std::move(c));
  } else {
    --open_;  // a broken connection is dropped; the next acquire opens a fresh one
  }
  cv_.notify_one();
}

std::uint64_t Pool::wakeups_sent() const { return doorbell_->sent(); }

std::size_t Pool::open_connections() const {
  std::lock_guard lock(mu_);
  return open_;
}

}  // namespace platform::db
