#pragma once
// The scheduler (docs/scheduler.md): level-triggered, woken by every NOTIFY and a 1-second timer. Each
// pass re-reads what every env should run (its release and scale) and what runs (core.instances, the
// hosts' liveness), and appends the events that close the gap, in one short transaction per env:
//   - InstanceLost for instances on a host that is down (they are replaced like any missing instance);
//   - InstancePlaced for each missing instance, on a host chosen by the Placer;
//   - InstanceStopRequested for each instance the rollout (reconcilers/rollout.h) no longer wants;
//   - ProcessUnschedulable when a process cannot get all its instances, with why, once per reason.
// One scheduler runs cluster-wide: it holds a session advisory lock as its lease.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "engine/signal.h"

namespace platform::db {
class Pool;
}

namespace platform::reconcilers {

struct SchedulerOptions {
  std::string conninfo;
  double cpu_ratio = 4.0;  // CPU may be oversubscribed up to this factor; memory never
  std::chrono::milliseconds period{1000};
  bool use_lease = true;
  std::chrono::hours log_retention{24 * 7};  // instance log lines older than this are removed (every minute)
};

class Scheduler {
 public:
  Scheduler(SchedulerOptions options, Signal* wake);
  ~Scheduler();
  void run();  // until stop(); database errors are logged and retried
  void stop();

  struct PassResult {
    int placed = 0, stopped = 0, lost = 0, unschedulable = 0;
    bool changed() const { return placed + stopped + lost > 0; }
  };
  // One pass over every env; for tests and for run().
  PassResult pass();

 private:
  SchedulerOptions options_;
  std::unique_ptr<db::Pool> pool_;
  struct ReleaseCache;  // releases are immutable: each is read once
  std::unique_ptr<ReleaseCache> releases_;
  Signal* wake_;
  std::atomic<bool> stopping_{false};
};

}  // namespace platform::reconcilers
