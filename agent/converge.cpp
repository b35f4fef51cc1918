#include "agent/converge.h"

#include <iostream>

namespace platform::agent {

Converger::Converger(SupervisorDeps deps, std::chrono::milliseconds gc_interval)
    : deps_(std::move(deps)), gc_interval_(gc_interval), next_gc_(std::chrono::steady_clock::now() + gc_interval) {}

void Converger::collect_images(const std::set<std::string>& in_use) {
  // Not while a run nobody is assigned is being stopped: its image may still be under it.
  if (!deps_.images || *cleanups_running_ > 0 || std::chrono::steady_clock::now() < next_gc_) return;
  next_gc_ = std::chrono::steady_clock::now() + gc_interval_;
  try {
    auto r = deps_.images->gc(in_use);
    if (r.images_removed > 0 || r.blobs_removed > 0)
      std::cerr << "platform-agent: image cache: removed " << r.images_removed << " images and " << r.blobs_removed
                << " blobs no instance here uses (" << r.bytes_freed / (1024 * 1024) << " MiB)\n";
  } catch (const std::exception& e) {
    std::cerr << "platform-agent: image cache garbage collection failed: " << e.what() << "\n";
  }
}

Converger::~Converger() {
  for (auto& [id, s] : supervisors_) s->detach();
  supervisors_.clear();
  for (auto& t : cleanups_) t.join();
}

void Converger::stop_all(const std::string& reason) {
  // The agent is stopping (platformd dev gives it 30 s): no instance may take longer than kShutdownGrace.
  for (auto& [id, s] : supervisors_) s->request_stop(reason, false, kShutdownGrace);
  for (auto& [id, s] : supervisors_)
    while (!s->finished()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  supervisors_.clear();
  for (auto& t : cleanups_) t.join();
  cleanups_.clear();
}

void Converger::apply(const Json& set) {
  if (!deps_.runtime) {  // runtime "none": the scheduler places nothing here; say so if it did
    if (!set.value("instances", Json::array()).empty() && !warned_no_runtime_)
      std::cerr << "platform-agent: instances are assigned to this host, but it has no runtime to run them\n";
    warned_no_runtime_ = true;
    return;
  }
  for (auto it = supervisors_.begin(); it != supervisors_.end();)
    it = it->second->finished() ? supervisors_.erase(it) : std::next(it);

  // The newest run of each instance on this host; older runs are leftovers.
  std::map<std::string, std::pair<int, std::string>> runs;
  for (const auto& r : deps_.runtime->present()) {
    auto parsed = parse_run_id(r);
    if (!parsed) continue;
    auto& best = runs[parsed->first];
    if (best.second.empty() || parsed->second > best.first) {
      if (!best.second.empty() && !cleaning_.count(best.second)) deps_.runtime->destroy(best.second);
      best = {parsed->second, r};
    } else if (!cleaning_.count(r)) {
      deps_.runtime->destroy(r);
    }
  }

  std::set<std::string> assigned;
  for (const auto& j : set.value("instances", Json::array())) {
    Assignment a;
    try {
      a = Assignment::from_json(j);
    } catch (const std::exception& e) {
      std::cerr << "platform-agent: skipping a malformed assignment: " << e.what() << "\n";
      continue;
    }
    assigned.insert(a.id);
    auto sup = supervisors_.find(a.id);
    if (sup != supervisors_.end()) {
      if (!a.run) sup->second->request_stop(a.desired_reason, true);
      continue;
    }
    auto run = runs.find(a.id);
    std::optional<std::string> adopt;
    if (run != runs.end() && !cleaning_.count(run->second.second)) adopt = run->second.second;
    if (!a.run && !adopt) {
      if (stop_reported_.insert(a.id).second)
        deps_.outbox->add(a.id, "InstanceStopped", {{"name", a.name}, {"reason", a.desired_reason + " (it was not running here)"}});
      continue;
    }
    const auto id = a.id;
    supervisors_.emplace(id, std::make_unique<InstanceSupervisor>(std::move(a), deps_, adopt));
  }
  for (auto& [id, s] : supervisors_)
    if (!assigned.count(id)) s->request_stop("no longer assigned to this host");

  // Runs on this host that belong to no assignment (e.g. of an instance given up on while the host
  // was down): stopped and removed, and reported so the control plane knows they ended.
  for (const auto& [instance, run] : runs) {
    if (assigned.count(instance) || supervisors_.count(instance) || cleaning_.count(run.second)) continue;
    cleaning_.insert(run.second);
    ++*cleanups_running_;
    cleanups_.emplace_back([deps = deps_, instance = instance, run = run.second, running = cleanups_running_] {
      Json data = {{"reason", "not assigned to this host"}};
      try {
        data["exit"] = deps.runtime->stop(run, deps.stop_grace).describe();
      } catch (const std::exception& e) {
        data["exit"] = e.what();
      }
      deps.runtime->destroy(run);
      deps.outbox->add(instance, "InstanceStopped", std::move(data));
      --*running;
    });
  }

  std::set<std::string> in_use;  // every image an assigned or still stopping instance runs
  for (const auto& j : set.value("instances", Json::array()))
    if (j.contains("image") && j["image"].is_object() && j["image"].contains("digest") && j["image"]["digest"].is_string())
      in_use.insert(j["image"]["digest"].get<std::string>());
  for (const auto& [id, s] : supervisors_) in_use.insert(s->image_digest());
  collect_images(in_use);
}

}  // namespace platform::agent
