#pragma once
// What happens after an instance's process ends: restart it (after how long), or stop for good and
// why. The manifest's restart policy (always | on-failure | never) with exponential backoff and a cap
// on attempts; a run that lasted long enough counts as a fresh start. Pure, for the agent's supervisor.
#include <chrono>
#include <string>

#include "agent/sandbox.h"
#include "engine/manifest/manifest.h"

namespace platform::agent {

struct RestartDecision {
  bool restart = false;
  std::chrono::milliseconds delay{0};  // before the restart
  bool failed = false;                 // the instance is given up on (a final state)
  std::string reason;                  // in words, for the event and `instance describe`
  std::string when;                    // with restart: "restarting in 4.0 s (attempt 3 of 10)"
};

// `restarts` is how many times this instance was restarted before; `ran_for` how long this run lasted;
// `stopped` is true when the platform itself stopped it (replaced, scaled down): never restarted.
RestartDecision decide_restart(const manifest::RestartPolicy& policy, const ExitStatus& how, int restarts,
                               std::chrono::milliseconds ran_for, bool stopped);

// A run at least this long resets the backoff: the instance had recovered.
inline constexpr std::chrono::minutes kBackoffReset{10};

}  // namespace platform::agent
