#pragma once
// Converging a host on its assignment set (docs/agent.md). Level-triggered: each answer of the
// assignment watch is the whole set, and apply() makes the host match it, whatever happened before:
// a supervisor per assigned instance (adopting a run already on the host after an agent restart, so
// nothing is started twice), a stop for every instance asked to stop or no longer assigned, and a stop
// for any run on the host that belongs to no assignment at all. Every few minutes, images that no
// instance on the host uses any more are garbage-collected from the image cache.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/supervisor.h"

namespace platform::agent {

class Converger {
 public:
  explicit Converger(SupervisorDeps deps, std::chrono::milliseconds gc_interval = std::chrono::minutes(5));
  ~Converger();  // leaves every instance running (the agent is exiting, not the host)

  void apply(const Json& assignment_set);  // {"version", "instances": [...]}
  // Stops every instance on this host and waits for them (platformd dev's agent, on Ctrl-C): each is
  // reported stopped with `reason`, and started again when the agent comes back. A process's
  // stop_timeout counts up to kShutdownGrace here, so the agent ends before platformd dev gives up on it.
  static constexpr std::chrono::milliseconds kShutdownGrace{20'000};
  void stop_all(const std::string& reason);
  std::size_t supervised() const { return supervisors_.size(); }

 private:
  SupervisorDeps deps_;
  std::map<std::string, std::unique_ptr<InstanceSupervisor>> supervisors_;
  std::set<std::string> stop_reported_;  // asked to stop, never ran here: reported once
  std::vector<std::thread> cleanups_;     // stopping runs nobody is assigned
  std::set<std::string> cleaning_;
  std::shared_ptr<std::atomic<int>> cleanups_running_ = std::make_shared<std::atomic<int>>(0);
  void collect_images(const std::set<std::string>& in_use);
  std::chrono::milliseconds gc_interval_;
  std::chrono::steady_clock::time_point next_gc_;
  bool warned_no_runtime_ = false;
};

}  // namespace platform::agent
