#pragma once
// Which backends the edge cannot connect to (docs/edge.md#backends-the-edge-cannot-reach). An instance
// can pass its health check and still refuse the edge: the endpoint's internal port is one its process
// does not listen on. The relay records each failed connect and each success; the edge probes every
// backend it has not connected to yet once, when a snapshot brings it; platform-edge reports the pairs
// whose last attempt failed, and `platform status` and `platform exposure` name them.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "ingress/edge_config.h"

namespace platform::ingress {

class BackendHealth {
 public:
  struct Failing {
    std::string target;      // the endpoint's or route's id
    Address backend;
    std::string error;       // "Connection refused", "Connection timed out", ...
    std::uint64_t failures;  // attempts in a row that failed
  };

  // From the relay's threads. `err` is the errno of the attempt (ETIMEDOUT for the connect timeout).
  // Only pairs of the snapshot served count (those keep_only() made); others are ignored.
  void failed(const std::string& target, const Address& backend, int err);
  void succeeded(const std::string& target, const Address& backend);  // cheap while nothing fails

  // The pairs whose last attempt failed, in a stable order.
  std::vector<Failing> failing() const;
  // Keeps only the pairs `config` still has; returns the pairs nothing has tried yet (to probe).
  std::vector<std::pair<std::string, Address>> keep_only(const EdgeConfig& config);

  // Connects to each pair at once (non-blocking, all together), waits at most `timeout`, and records
  // the outcomes; closes at once. `proxy_v2`: pairs whose backend wants a PROXY header get a LOCAL one
  // first (the spec's "connection made by the proxy itself, e.g. a health check").
  void probe(const std::vector<std::pair<std::string, Address>>& pairs, const EdgeConfig& config,
             std::chrono::milliseconds timeout);

 private:
  void failed_locked(const std::string& target, const Address& backend, int err);
  void succeeded_locked(const std::string& target, const Address& backend);
  struct State {
    Address address;
    bool tried = false;
    bool failing = false;
    std::string error;
    std::uint64_t failures = 0;
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, State> states_;  // (target id, "ip:port")
  std::atomic<int> failing_{0};  // how many states are failing: succeeded() takes the lock only then
};

}  // namespace platform::ingress
