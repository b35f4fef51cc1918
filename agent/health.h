#pragma once
// Health checks of an instance (the manifest's [processes.NAME.health]): tcp connects and http GETs
// made from inside the instance's network namespace to the instance's address (agent/runtime.h
// ProbeTarget), each with its timeout; and the tracker that turns probes into healthy or unhealthy with grace and threshold.
#include <sys/types.h>

#include <chrono>
#include <string>

#include "agent/runtime.h"
#include "engine/manifest/manifest.h"

namespace platform::agent {

struct ProbeResult {
  bool ok = false;
  std::string error;  // why not, in words ("connection refused on port 8080", "HTTP 503 from /healthz")
  std::chrono::milliseconds took{0};
};

// One tcp or http probe at `target`. exec checks run inside the instance, through its runtime
// (Runtime::exec, used by the supervisor); here they answer not ok, saying so.
ProbeResult probe(const manifest::HealthCheck& check, const ProbeTarget& target);

// starting (within grace, or no verdict yet) -> healthy / unhealthy.
class HealthTracker {
 public:
  explicit HealthTracker(manifest::HealthCheck check) : check_(std::move(check)) {}
  // Records a probe taken `since_start` after the instance started; returns the state after it.
  const std::string& record(const ProbeResult& r, std::chrono::milliseconds since_start);
  const std::string& state() const { return state_; }
  const std::string& last_error() const { return last_error_; }
  int consecutive_failures() const { return failures_; }

 private:
  manifest::HealthCheck check_;
  std::string state_ = "starting", last_error_;
  int failures_ = 0;
};

}  // namespace platform::agent
