#pragma once
// PostgreSQL access: a bounded connection pool over libpqxx and the SQLSTATE -> Error mapping.
#include <pqxx/pqxx>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/error.h"

namespace platform::db {

// Opens a connection with the session settings every platform connection uses
// (idle_in_transaction_session_timeout, application_name, UTC).
std::unique_ptr<pqxx::connection> connect(const std::string& conninfo, const std::string& application_name);

// SQL that renders a timestamptz column (or expression) the way the API writes timestamps:
// RFC 3339 in UTC with microseconds, "2026-11-22T03:04:58.458585Z".
std::string sql_rfc3339(const std::string& column);

// Translates a database exception into the platform's error model (custom SQLSTATEs from sql/).
PlatformError translate(const std::exception& e);

class Doorbell;

class Pool {
 public:
  Pool(std::string conninfo, std::size_t max_size, std::string application_name = "platformd");
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  class Lease {
   public:
    Lease(Pool* pool, std::unique_ptr<pqxx::connection> c) : pool_(pool), conn_(std::move(c)) {}
    Lease(Lease&&) = default;
    ~Lease();
    pqxx::connection& operator*() { return *conn_; }
    pqxx::connection* operator->() { return conn_.get(); }

   private:
    Pool* pool_;
    std::unique_ptr<pqxx::connection> conn_;
  };

  // Waits up to `timeout` for a free connection; throws PlatformError(unavailable) after that
  // or when the database cannot be reached. Pool connections leave the NOTIFY of their appends to
  // the pool (platform.notify_after_commit): write through transact(), which rings after commit.
  Lease acquire(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Runs fn in a read-committed transaction, commits, then rings the doorbell so listeners wake up
  // for the events it appended (see engine/doorbell.h). Database errors become PlatformError.
  template <class F>
  auto transact(F&& fn) {
    return write(std::forward<F>(fn), true);
  }

  // Like transact(), for a write that appends no events (an exec session's bytes): commits without
  // ringing the doorbell, so the event readers are not woken for nothing.
  template <class F>
  auto transact_quiet(F&& fn) {
    return write(std::forward<F>(fn), false);
  }

  // Rings the doorbell: after a transact_quiet() that did append events after all.
  void wake();

  // Runs fn in a read-only repeatable-read transaction (one snapshot for every statement).
  template <class F>
  auto read(F&& fn) {
    std::optional<Lease> lease;
    std::optional<pqxx::transaction<pqxx::repeatable_read, pqxx::read_only>> tx;
    try {
      begin(lease, tx);
      return fn(*tx);
    } catch (const PlatformError&) {
      throw;
    } catch (const std::exception& e) {
      throw translate(e);
    }
  }

  std::size_t max_size() const { return max_size_; }
  std::size_t open_connections() const;
  std::uint64_t wakeups_sent() const;  // NOTIFYs the doorbell has sent for this pool's commits
  const std::string& conninfo() const { return conninfo_; }

 private:
  // Leases a connection and begins `tx` on it. An idle connection whose server went away (a restart,
  // a crash) only says so when used: when the BEGIN finds it broken, nothing has run yet, so every
  // idle connection is dropped (they died with it) and the transaction begins once more on a fresh
  // one. A second failure is the caller's: the database is really unavailable.
  template <class Tx>
  void begin(std::optional<Lease>& lease, std::optional<Tx>& tx) {
    lease.emplace(acquire());
    try {
      tx.emplace(**lease);
    } catch (const pqxx::broken_connection&) {
      lease.reset();
      drop_idle();
      lease.emplace(acquire());
      tx.emplace(**lease);
    }
  }
  template <class F>
  auto write(F&& fn, bool wake) {
    std::optional<Lease> lease;
    std::optional<pqxx::work> tx;  // declared after the lease: ends before its connection goes back
    auto finish = [&] { wake ? commit_and_wake(*tx) : tx->commit(); };
    try {
      begin(lease, tx);
      if constexpr (std::is_void_v<decltype(fn(*tx))>) {
        fn(*tx);
        finish();
      } else {
        auto result = fn(*tx);
        finish();
        return result;
      }
    } catch (const PlatformError&) {
      throw;
    } catch (const std::exception& e) {
      throw translate(e);
    }
  }
  void drop_idle();
  void release(std::unique_ptr<pqxx::connection> c);
  void commit_and_wake(pqxx::work& tx);

  std::string conninfo_;
  std::size_t max_size_;
  std::string application_name_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  std::size_t open_ = 0;
  std::unique_ptr<Doorbell> doorbell_;
};

}  // namespace platform::db
