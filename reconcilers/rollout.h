#pragma once
// Rollout: for one env, what to start and what to stop so that each process runs `count` instances of
// the env's release at the process's current size (a resized instance, or one placed before a `platform restart`, is replaced like an old one). New instances start first; an old instance stops only once a new one is healthy in
// its place (or at once when it is not serving anyway), so a deploy of a healthy release never drops a
// process to zero instances. Scaling down stops the least useful instances first: failed, then not
// healthy, then the newest. Pure and deterministic: the scheduler feeds it rows; tests drive it directly.
#include <map>
#include <string>
#include <vector>

namespace platform::reconcilers {

struct ProcessTarget {
  std::string process;
  int count = 0;
};

struct InstanceView {
  std::string id, name, process, release_id;
  int ordinal = 0;
  bool desired_run = true;  // false: asked to stop, not yet stopped
  std::string state;        // core.instances.state
  std::string health;       // core.instances.health
  bool resized = false;     // its cpu or memory is not what the process has now (`platform scale`)
  bool restart = false;     // placed before its process's last `platform restart`: replaced too
  bool healthy() const;     // running, and healthy or without a check
};

struct StopAction {
  std::string instance_id, name, process;
  std::string reason;  // in words: "replaced by release v4", "scaled web to 1"
};

struct RolloutPlan {
  std::map<std::string, int> place;  // process -> new instances of the release to place
  std::vector<StopAction> stop;
};

// `release_label` names the release in reasons ("v4"). `instances`: the env's instances not yet stopped.
RolloutPlan plan_rollout(const std::string& release_id, const std::string& release_label,
                         const std::vector<ProcessTarget>& targets, const std::vector<InstanceView>& instances);

// When a new instance of `process` could not be placed for lack of room: one old instance to stop so it
// can be, or nothing (another stop is already under way, nothing old is left, or stopping it would leave
// the process with nothing serving while it has count >= 2).
std::vector<StopAction> make_room(const std::string& release_id, const std::string& release_label,
                                  const std::string& process, int count, const std::vector<InstanceView>& instances);

}  // namespace platform::reconcilers
