#include "projections/runner.h"

#include <spdlog/spdlog.h>

#include <thread>

#include "engine/db.h"

namespace platform::projections {
namespace {
constexpr std::chrono::milliseconds kSafetyTimer{1000};
constexpr std::chrono::milliseconds kHeldBackPoll{20};

std::string lease_key(const std::string& name) { return "projection:" + name; }

void ensure_checkpoint_row(pqxx::connection& conn, const std::string& name) {
  pqxx::work tx(conn);
  tx.exec_params("INSERT INTO projection.checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", name);
  tx.commit();
}

bool try_lease(pqxx::connection& conn, const std::string& name) {
  pqxx::nontransaction tx(conn);
  return tx.exec_params("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", lease_key(name))[0][0].as<bool>();
}
}  // namespace

events::Cursor checkpoint(pqxx::transaction_base& tx, const std::string& name) {
  auto r = tx.exec_params("SELECT tx_id::text, position FROM projection.checkpoints WHERE name = $1", name);
  if (r.empty()) return {};
  return {std::stoull(r[0][0].as<std::string>()), r[0][1].as<std::int64_t>()};
}

Runner::Runner(std::unique_ptr<Projection> projection, RunnerOptions options, Signal* wake)
    : projection_(std::move(projection)), name_(projection_->name()), options_(std::move(options)), wake_(wake) {}

BatchResult Runner::run_batch(pqxx::connection& conn) {
  BatchResult result;
  pqxx::work tx(conn);
  // Lock the checkpoint row first: a second runner waits here and then sees the new checkpoint, so it
  // never folds a batch twice. The fenced UPDATE below still catches a rebuild that reset it meanwhile.
  tx.exec_params("SELECT 1 FROM projection.checkpoints WHERE name = $1 FOR UPDATE", name_);
  auto from = checkpoint(tx, name_);
  auto page = events::read_after(tx, from, {}, options_.batch_size);
  result.held_back = page.held_back;
  result.events = static_cast<int>(page.events.size());
  if (page.events.empty()) return result;  // nothing to fold; the transaction is rolled back
  for (const auto& e : page.events) projection_->apply(tx, e);
  if (options_.pause_before_commit.count() > 0) std::this_thread::sleep_for(options_.pause_before_commit);
  auto updated = tx.exec_params(
      "UPDATE projection.checkpoints SET tx_id = $2::text::xid8, position = $3, events = events + $4,"
      " updated_at = now(), runner = $5"
      " WHERE name = $1 AND tx_id = $6::text::xid8 AND position = $7",
      name_, std::to_string(page.next.tx), page.next.pos, result.events, options_.runner_id, std::to_string(from.tx),
      from.pos);
  if (updated.affected_rows() != 1) {
    tx.abort();  // another runner (or a rebuild) moved the checkpoint: our batch never happened
    result.outcome = BatchOutcome::fenced_out;
    return result;
  }
  tx.commit();
  result.outcome = BatchOutcome::folded;
  return result;
}

void Runner::run() {
  while (!stopping_) {
    std::unique_ptr<pqxx::connection> lease_conn, work_conn;
    try {
      work_conn = db::connect(options_.conninfo, "projection:" + name_);
      ensure_checkpoint_row(*work_conn, name_);
      if (options_.use_lease) {
        lease_conn = db::connect(options_.conninfo, "projection-lease:" + name_);
        while (!stopping_ && !try_lease(*lease_conn, name_)) wake_->wait_for(wake_->generation(), kSafetyTimer);
        if (stopping_) break;
        spdlog::info("projection {}: lease acquired", name_);
      }
      while (!stopping_) {
        auto seen = wake_->generation();
        auto r = run_batch(*work_conn);
        if (r.outcome == BatchOutcome::folded) continue;  // more may be waiting
        if (r.outcome == BatchOutcome::fenced_out) {
          spdlog::warn("projection {}: checkpoint moved by someone else; batch discarded", name_);
          continue;
        }
        if (lease_conn && !lease_conn->is_open()) throw pqxx::broken_connection("lease connection lost");
        wake_->wait_for(seen, r.held_back ? kHeldBackPoll : kSafetyTimer);
      }
    } catch (const std::exception& e) {
      if (stopping_) break;
      spdlog::warn("projection {}: {}; retrying in 1 s", name_, e.what());
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
}

void Runner::stop() {
  stopping_ = true;
  if (wake_) wake_->notify();
}

void reset(pqxx::connection& conn, Projection& projection) {
  pqxx::work tx(conn);
  for (const auto& t : projection.tables()) tx.exec("TRUNCATE " + t);
  tx.exec_params(
      "INSERT INTO projection.checkpoints (name) VALUES ($1) ON CONFLICT (name) DO UPDATE"
      " SET tx_id = '0'::xid8, position = 0, events = 0, updated_at = now(), runner = 'rebuild'",
      projection.name());
  tx.commit();
}

RebuildResult rebuild(const std::string& conninfo, const std::string& name, std::chrono::milliseconds timeout) {
  auto projection = by_name(name);
  if (!projection) {
    std::string known;
    for (const auto& n : names()) known += (known.empty() ? "" : ", ") + n;
    throw PlatformError(ErrorCode::not_found, "no projection named \"" + name + "\"", "Known projections: " + known);
  }
  auto started = std::chrono::steady_clock::now();
  RebuildResult result;
  try {
    auto conn = db::connect(conninfo, "projection-rebuild:" + name);
    events::Cursor target;
    {
      pqxx::work tx(*conn);
      target = events::head(tx);
    }
    reset(*conn, *projection);
    auto lease_conn = db::connect(conninfo, "projection-rebuild-lease:" + name);
    Signal never;
    Runner runner(std::move(projection), RunnerOptions{conninfo, "rebuild", 500, false, {}}, &never);
    auto deadline = started + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (!result.folded_here && try_lease(*lease_conn, name)) result.folded_here = true;
      if (result.folded_here) {
        auto r = runner.run_batch(*conn);
        if (r.outcome != BatchOutcome::folded && !r.held_back) {
          pqxx::work tx(*conn);
          if (checkpoint(tx, name) >= target) break;
        }
        continue;
      }
      {
        pqxx::work tx(*conn);
        if (checkpoint(tx, name) >= target) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    pqxx::work tx(*conn);
    if (checkpoint(tx, name) < target)
      throw PlatformError(ErrorCode::timed_out, "projection " + name + " did not catch up before the timeout",
                          "Check that a platformd with the projections role is running, or retry.");
    result.events = tx.exec_params("SELECT events FROM projection.checkpoints WHERE name = $1", name)[0][0]
                        .as<std::int64_t>();
  } catch (const std::exception& e) {
    throw db::translate(e);
  }
  result.took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  return result;
}

}  // namespace platform::projections
