#pragma once
// The edge's data plane (docs/edge.md): listeners for the explicit TCP endpoints and the shared TLS
// listener, and the connections between clients and instances. Reconfigured live by apply(): listeners
// whose address stays are never re-bound, removed ones stop accepting while their connections finish,
// and every connection keeps the snapshot it was accepted with. Asio stays inside edge.cpp and relay.cpp.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ingress/edge_config.h"

namespace platform::ingress {

class Edge {
 public:
  explicit Edge(int threads = 1);
  ~Edge();  // stops: closes the listeners and every connection
  Edge(const Edge&) = delete;
  Edge& operator=(const Edge&) = delete;

  struct Applied {
    int opened = 0, closed = 0, kept = 0;  // listeners
  };
  // Applies a snapshot. All or nothing: when a new address cannot be bound, nothing of the snapshot is
  // applied and PlatformError says which address and why (the edge keeps serving the previous one).
  Applied apply(std::shared_ptr<const EdgeConfig> config);
  std::shared_ptr<const EdgeConfig> current() const;

  // Prometheus text: connections by listener kind and outcome, bytes, active connections, config version.
  std::string metrics_text() const;
  // Serves GET /metrics on `address` (one more listener, plain HTTP/1.1).
  void serve_metrics(const Address& address);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace platform::ingress
