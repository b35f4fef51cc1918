#include "reconcilers/placement.h"

#include <fmt/format.h>

#include <algorithm>

namespace platform::reconcilers {

namespace {
// The memory an instance takes on that host: its own and the runtime's share.
std::int64_t need(const HostCapacity& h, const PlacementRequest& r) { return r.memory_mib + h.instance_overhead_mib; }
}  // namespace

Placer::Placer(std::vector<HostCapacity> hosts, double cpu_ratio) : hosts_(std::move(hosts)), cpu_ratio_(cpu_ratio) {
  // A stable order (by id) makes every tie-break, and so every placement, deterministic.
  std::sort(hosts_.begin(), hosts_.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  for (std::size_t i = 0; i < hosts_.size(); ++i) index_[hosts_[i].id] = i;
}

PlacementResult Placer::place(const PlacementRequest& r) {
  auto& counts = group_counts_[r.group];
  if (counts.size() != hosts_.size()) counts.assign(hosts_.size(), 0);
  std::optional<std::size_t> best;
  for (std::size_t i = 0; i < hosts_.size(); ++i) {
    const auto& h = hosts_[i];
    if (!h.up || !h.unavailable.empty()) continue;
    if (!r.pinned_host.empty() && h.id != r.pinned_host) continue;
    if (h.memory_mib - h.memory_allocated < need(h, r)) continue;            // memory: hard
    if (h.cpu_allocated + r.cpu > h.cpus * cpu_ratio_ + 1e-9) continue;      // cpu: soft, up to the ratio
    if (!best) {
      best = i;
      continue;
    }
    // Spread first (fewest of this group), then the most free memory, then the lowest id (the order).
    const auto& b = hosts_[*best];
    if (counts[i] != counts[*best] ? counts[i] < counts[*best]
                                   : (h.memory_mib - h.memory_allocated) > (b.memory_mib - b.memory_allocated))
      best = i;
  }
  if (!best) return {std::nullopt, why_not(r)};
  auto& h = hosts_[*best];
  h.cpu_allocated += r.cpu;
  h.memory_allocated += need(h, r);
  ++counts[*best];
  return {h.id, ""};
}

void Placer::record(const std::string& host_id, const PlacementRequest& r) {
  auto it = index_.find(host_id);
  if (it == index_.end()) return;
  auto& h = hosts_[it->second];
  h.cpu_allocated += r.cpu;
  h.memory_allocated += need(h, r);
  auto& counts = group_counts_[r.group];
  if (counts.size() != hosts_.size()) counts.assign(hosts_.size(), 0);
  ++counts[it->second];
}

bool Placer::would_fit_after(const std::string& host_id, const PlacementRequest& freed,
                             const PlacementRequest& r) const {
  auto it = index_.find(host_id);
  if (it == index_.end()) return false;
  const auto& h = hosts_[it->second];
  if (!h.up || !h.unavailable.empty()) return false;
  return h.memory_mib - (h.memory_allocated - need(h, freed)) >= need(h, r) &&
         h.cpu_allocated - freed.cpu + r.cpu <= h.cpus * cpu_ratio_ + 1e-9;
}

void Placer::release(const std::string& host_id, const PlacementRequest& r) {
  auto it = index_.find(host_id);
  if (it == index_.end()) return;
  auto& h = hosts_[it->second];
  h.cpu_allocated = std::max(0.0, h.cpu_allocated - r.cpu);
  h.memory_allocated = std::max<std::int64_t>(0, h.memory_allocated - need(h, r));
  auto g = group_counts_.find(r.group);
  if (g != group_counts_.end() && g->second.size() == hosts_.size() && g->second[it->second] > 0)
    --g->second[it->second];
}

std::string Placer::why_not(const PlacementRequest& r) const {
  std::string out = fmt::format("needs {} MiB and {:g} CPU", r.memory_mib, r.cpu);
  if (hosts_.empty()) return out + "; no host is enrolled (platform host join-token)";
  if (!r.pinned_host.empty()) {
    auto it = index_.find(r.pinned_host);
    if (it == index_.end()) return out + "; its volume's host " + r.pinned_host + " is gone";
    out += "; it must run on " + hosts_[it->second].name + " (its volume is there)";
  }
  // The most promising hosts first: up, then by free memory.
  std::vector<const HostCapacity*> order;
  for (const auto& h : hosts_)
    if (r.pinned_host.empty() || h.id == r.pinned_host) order.push_back(&h);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    const bool ua = a->up && a->unavailable.empty(), ub = b->up && b->unavailable.empty();
    if (ua != ub) return ua;
    return a->memory_mib - a->memory_allocated > b->memory_mib - b->memory_allocated;
  });
  const std::size_t shown = std::min<std::size_t>(order.size(), 5);
  for (std::size_t i = 0; i < shown; ++i) {
    const auto& h = *order[i];
    const auto name = h.name.empty() ? h.id : h.name;
    if (!h.up) {
      out += "; " + name + " is down";
    } else if (!h.unavailable.empty()) {
      out += "; " + name + " " + h.unavailable;
    } else if (h.memory_mib - h.memory_allocated < need(h, r)) {
      out += fmt::format("; {} has {} MiB free", name, h.memory_mib - h.memory_allocated);
      if (h.instance_overhead_mib > 0)
        out += fmt::format(" (an instance there takes {} MiB more for its microVM)", h.instance_overhead_mib);
    } else {
      out += fmt::format("; {} has {:g} of {:g} CPU left (CPU may be {:g}x oversubscribed)", name,
                         std::max(0.0, h.cpus * cpu_ratio_ - h.cpu_allocated), h.cpus * cpu_ratio_, cpu_ratio_);
    }
  }
  if (order.size() > shown) out += fmt::format("; and {} more hosts, none with room", order.size() - shown);
  return out;
}

}  // namespace platform::reconcilers
