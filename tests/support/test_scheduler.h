#pragma once
// The real scheduler on a test's database, without the cluster lease, for tests that run its passes
// themselves (no agent: the tests write what its reports would).
#include <string>

#include "engine/signal.h"
#include "reconcilers/scheduler.h"

namespace platform::harness {

struct TestScheduler {
  Signal wake;
  reconcilers::Scheduler scheduler;
  explicit TestScheduler(const std::string& conninfo) : scheduler(options(conninfo), &wake) {}
  reconcilers::Scheduler::PassResult pass() { return scheduler.pass(); }

  static reconcilers::SchedulerOptions options(const std::string& conninfo) {
    reconcilers::SchedulerOptions o;
    o.conninfo = conninfo;
    o.use_lease = false;
    return o;
  }
};

}  // namespace platform::harness
