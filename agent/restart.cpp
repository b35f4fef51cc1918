#include "agent/restart.h"

#include <fmt/format.h>

#include <algorithm>

namespace platform::agent {

RestartDecision decide_restart(const manifest::RestartPolicy& p, const ExitStatus& how, int restarts,
                               std::chrono::milliseconds ran_for, bool stopped) {
  RestartDecision d;
  const bool clean = !how.oom && how.signal == 0 && how.exit_code == 0;
  if (stopped) {
    d.reason = "stopped by the platform (" + how.describe() + ")";
    return d;
  }
  if (p.policy == "never" || (p.policy == "on-failure" && clean)) {
    d.failed = !clean;
    d.reason = how.describe() + "; restart policy \"" + p.policy + "\": not restarted";
    return d;
  }
  if (ran_for >= kBackoffReset) restarts = 0;  // it had been running fine: start counting again
  if (p.max_attempts > 0 && restarts >= p.max_attempts) {
    d.failed = true;
    d.reason = fmt::format("{}; gave up after {} restart{} (restart.max_attempts = {})", how.describe(), restarts,
                           restarts == 1 ? "" : "s", p.max_attempts);
    return d;
  }
  d.restart = true;
  // backoff, 2 x backoff, 4 x backoff ... up to max_backoff (no overflow for large attempt counts).
  std::int64_t delay = p.backoff_ms;
  for (int i = 0; i < restarts && delay < p.max_backoff_ms; ++i) delay *= 2;
  d.delay = std::chrono::milliseconds(std::min(delay, p.max_backoff_ms));
  d.when = fmt::format("restarting in {:.1f} s (attempt {}{})", static_cast<double>(d.delay.count()) / 1000.0,
                       restarts + 1, p.max_attempts > 0 ? fmt::format(" of {}", p.max_attempts) : std::string());
  d.reason = how.describe() + "; " + d.when;
  return d;
}

}  // namespace platform::agent
