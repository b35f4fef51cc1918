#pragma once
// Runs one projection: a cluster-wide lease (session advisory lock), batches folded in one transaction
// with a fenced checkpoint update, wake-ups from NOTIFY, a short poll while rows are held back by the
// horizon and a 1 s safety timer.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "engine/signal.h"
#include "projections/projection.h"

namespace platform::projections {

struct RunnerOptions {
  std::string conninfo;
  std::string runner_id = "platformd";  // recorded in projection.checkpoints.runner
  int batch_size = 200;
  bool use_lease = true;  // tests switch it off to show the fence alone keeps one effect per event
  // Fault injection for crash tests: sleep between folding a batch and committing it.
  std::chrono::milliseconds pause_before_commit{0};
};

enum class BatchOutcome { folded, idle, fenced_out };

struct BatchResult {
  BatchOutcome outcome = BatchOutcome::idle;
  int events = 0;          // events read (folded or skipped as irrelevant)
  bool held_back = false;  // committed events wait above the horizon
};

class Runner {
 public:
  Runner(std::unique_ptr<Projection> projection, RunnerOptions options, Signal* wake);
  // Blocks until stop(): holds the lease when it can, folds batches, sleeps until woken.
  void run();
  void stop();
  const std::string& name() const { return name_; }

  // One batch on `conn`, without any lease handling.
  BatchResult run_batch(pqxx::connection& conn);

 private:
  std::unique_ptr<Projection> projection_;
  std::string name_;
  RunnerOptions options_;
  Signal* wake_;
  std::atomic<bool> stopping_{false};
};

// Empties the projection's tables and sets its checkpoint back to zero, in one transaction.
void reset(pqxx::connection& conn, Projection& projection);

// `platformd projections rebuild NAME`: reset, then fold from event zero up to the head as it was at the
// reset. If a running platformd holds the lease, it refolds and this waits for it.
struct RebuildResult {
  std::int64_t events = 0;
  bool folded_here = false;
  std::chrono::milliseconds took{0};
};
RebuildResult rebuild(const std::string& conninfo, const std::string& name,
                      std::chrono::milliseconds timeout = std::chrono::minutes(10));

events::Cursor checkpoint(pqxx::transaction_base& tx, const std::string& name);

}  // namespace platform::projections
