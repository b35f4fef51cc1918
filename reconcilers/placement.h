#pragma once
// Placement: which host an instance goes to. Memory is a hard cap (never oversubscribed); CPU is soft,
// up to `cpu_ratio` times a host's CPUs; instances of one group (an app env's process) spread across
// hosts; a request may be pinned to a host (volume locality). When nothing fits, the answer says why
// in words, host by host ("needs 2048 MiB; h1 has 512 MiB free; h2 is down"). Pure and deterministic:
// the reconciler feeds it hosts and requests; tests and the benchmark drive it directly.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace platform::reconcilers {

struct HostCapacity {
  std::string id, name;
  bool up = true;
  double cpus = 0;
  std::int64_t memory_mib = 0;
  // Allocated by instances already placed there.
  double cpu_allocated = 0;
  std::int64_t memory_allocated = 0;
  std::string unavailable = {};  // non-empty: up, but takes no instances, and why ("has no runtime (...)")
  // Memory each instance there takes besides its own (a microVM's guest kernel); counted like its own.
  std::int64_t instance_overhead_mib = 0;
};

struct PlacementRequest {
  std::string group;  // spread key, e.g. "<env id>/web"
  double cpu = 0;
  std::int64_t memory_mib = 0;
  std::string pinned_host;  // non-empty: only this host (it holds the instance's volume)
};

struct PlacementResult {
  std::optional<std::string> host_id;  // set when placed
  std::string reason;                  // why not, when not placed
};

class Placer {
 public:
  explicit Placer(std::vector<HostCapacity> hosts, double cpu_ratio = 4.0);

  // Places one instance and records its allocation, so the next request sees it.
  PlacementResult place(const PlacementRequest& request);
  // Records an instance already placed there (allocation and spread), before new ones are placed.
  void record(const std::string& host_id, const PlacementRequest& request);
  // Whether `request` would fit on `host_id` once `freed` (an instance there) is gone: stopping it to
  // make room is only worth it then.
  bool would_fit_after(const std::string& host_id, const PlacementRequest& freed, const PlacementRequest& request) const;
  // Returns an allocation (an instance stopped or moved away).
  void release(const std::string& host_id, const PlacementRequest& request);

  const std::vector<HostCapacity>& hosts() const { return hosts_; }

 private:
  std::string why_not(const PlacementRequest& request) const;

  std::vector<HostCapacity> hosts_;
  double cpu_ratio_;
  std::map<std::string, std::size_t> index_;                 // host id -> position
  std::map<std::string, std::vector<int>> group_counts_;     // group -> instances per host position
};

}  // namespace platform::reconcilers
