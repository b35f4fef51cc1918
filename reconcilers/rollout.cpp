#include "reconcilers/rollout.h"

#include <algorithm>
#include <set>

namespace platform::reconcilers {

bool InstanceView::healthy() const { return state == "running" && (health == "healthy" || health == "none"); }

namespace {

// Least useful first: failed, then anything not serving, then the newest.
int usefulness(const InstanceView& i) {
  if (i.state == "failed") return 0;
  if (!i.healthy()) return 1;
  return 2;
}

void sort_least_useful_first(std::vector<const InstanceView*>& v) {
  std::sort(v.begin(), v.end(), [](const auto* a, const auto* b) {
    if (usefulness(*a) != usefulness(*b)) return usefulness(*a) < usefulness(*b);
    return a->ordinal > b->ordinal;
  });
}

struct ProcessSets {
  std::vector<const InstanceView*> fresh, old;  // running-desired, of the release / of another
  int stopping = 0;                              // asked to stop, not stopped yet
};

std::map<std::string, ProcessSets> by_process(const std::string& release_id, const std::vector<InstanceView>& all) {
  std::map<std::string, ProcessSets> out;
  for (const auto& i : all) {
    auto& s = out[i.process];
    if (!i.desired_run) {
      ++s.stopping;
      continue;
    }
    (i.release_id == release_id && !i.resized && !i.restart ? s.fresh : s.old).push_back(&i);
  }
  return out;
}

}  // namespace

RolloutPlan plan_rollout(const std::string& release_id, const std::string& release_label,
                         const std::vector<ProcessTarget>& targets, const std::vector<InstanceView>& instances) {
  RolloutPlan plan;
  auto sets = by_process(release_id, instances);
  std::map<std::string, int> counts;
  for (const auto& t : targets) counts[t.process] = std::max(0, t.count);
  for (const auto& [process, count] : counts) sets[process];  // processes with nothing yet

  for (auto& [process, s] : sets) {
    auto c = counts.find(process);
    const int count = c == counts.end() ? 0 : c->second;
    const bool in_release = c != counts.end();
    auto stop = [&](const InstanceView* i, std::string reason) {
      plan.stop.push_back({i->id, i->name, process, std::move(reason)});
    };

    // Too many of the release: scale down.
    sort_least_useful_first(s.fresh);
    const int fresh = static_cast<int>(s.fresh.size());
    for (int k = 0; k < fresh - count; ++k)
      stop(s.fresh[k], "scaled " + process + " to " + std::to_string(count));
    if (fresh < count) plan.place[process] = count - fresh;

    // Old instances: those not serving go at once; serving ones as new ones become healthy in their place.
    const auto replaced_reason = [&](const InstanceView* i) -> std::string {
      if (!in_release) return "process " + process + " is not in release " + release_label;
      if (i->release_id == release_id && i->resized) return "resized: replaced by an instance of the new size";
      if (i->release_id == release_id) return "restarted: replaced by a new instance (platform restart)";
      return "replaced by release " + release_label;
    };
    int fresh_healthy = 0;
    for (int k = std::max(0, fresh - count); k < fresh; ++k) fresh_healthy += s.fresh[k]->healthy() ? 1 : 0;
    std::vector<const InstanceView*> old_serving;
    for (const auto* i : s.old) {
      if (i->healthy()) old_serving.push_back(i);
      else stop(i, replaced_reason(i));
    }
    std::sort(old_serving.begin(), old_serving.end(), [](const auto* a, const auto* b) { return a->ordinal < b->ordinal; });
    const int keep = std::max(0, count - fresh_healthy);
    for (int k = 0; k < static_cast<int>(old_serving.size()) - keep; ++k) stop(old_serving[k], replaced_reason(old_serving[k]));
  }
  return plan;
}

std::vector<StopAction> make_room(const std::string& release_id, const std::string& release_label,
                                  const std::string& process, int count, const std::vector<InstanceView>& instances) {
  auto sets = by_process(release_id, instances);
  auto& s = sets[process];
  if (s.stopping > 0 || s.old.empty()) return {};
  int serving = 0;
  for (const auto* i : s.fresh) serving += i->healthy() ? 1 : 0;
  for (const auto* i : s.old) serving += i->healthy() ? 1 : 0;
  sort_least_useful_first(s.old);
  const auto* victim = s.old.front();
  if (count >= 2 && victim->healthy() && serving - 1 < 1) return {};
  return {{victim->id, victim->name, process,
           "replaced by release " + release_label + " (stopped first to make room: no host has room for both)"}};
}

}  // namespace platform::reconcilers
