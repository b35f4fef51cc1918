#pragma once
// The edge's data plane (docs/edge.md): listeners for the explicit TCP endpoints and the shared TLS
// listener, and the connections between clients and instances. Reconfigured live by apply(): listeners
// whose address stays are never re-bound, removed ones stop accepting while their connections finish,
// and every connection keeps the snapshot it was accepted with. Asio stays inside edge.cpp and relay.cpp.
#include <chrono>
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

  // A listener the snapshot wants that could not be bound (another process holds the address and port,
  // or the address is not on this host). The rest of the snapshot is served without it.
  struct Unbound {
    Address address;
    bool tls = false;  // the shared TLS listener; otherwise an endpoint's
    std::string error;  // e.g. "Address already in use"
  };
  struct Applied {
    int opened = 0, closed = 0, kept = 0;  // listeners
    std::vector<Unbound> unbound;
  };
  // Applies a snapshot. A listener that cannot be bound holds back only itself: everything else of the
  // snapshot is served, and the listener is listed in `unbound` (and by unbound()) until a later
  // retry_unbound() or apply() binds it. One tenant's port that is taken on this host must not freeze the
  // backends and ports of everyone else (docs/decisions/0009-edge-unbound-listeners.md).
  Applied apply(std::shared_ptr<const EdgeConfig> config);
  std::shared_ptr<const EdgeConfig> current() const;
  // The current snapshot's listeners that are not bound, in a stable order.
  std::vector<Unbound> unbound() const;
  // Tries to bind them again; returns how many are listening now.
  int retry_unbound();

  // A backend whose last connect from the edge failed, though the control plane lists it as healthy:
  // e.g. its process does not listen on the endpoint's internal port. From real connections and from
  // probe_new_backends(); cleared by the next connect that works, or when the snapshot drops it.
  struct Unreachable {
    std::string target;  // the endpoint's or route's id
    Address backend;
    std::string error;   // "Connection refused"
    std::uint64_t failures = 0;  // attempts in a row
  };
  std::vector<Unreachable> unreachable() const;
  // Connects once to each backend that the snapshots applied since the last call brought, all at once,
  // waiting at most `timeout`, and closes at once (a PROXY v2 backend first gets a LOCAL header, as for a
  // proxy's health check). Returns how many it tried. platform-edge calls it after each apply(), before
  // it reports, so a report of a version says which of its backends refuse.
  int probe_new_backends(std::chrono::milliseconds timeout);
  // Connects once more to each unreachable() backend the same way: one that listens now (the app took its
  // time to open the port) is cleared without waiting for a client's connection. Returns how many.
  int probe_unreachable(std::chrono::milliseconds timeout);

  // Prometheus text: connections by listener kind and outcome, bytes, active connections, config version.
  std::string metrics_text() const;
  // Serves GET /metrics on `address` (one more listener, plain HTTP/1.1).
  void serve_metrics(const Address& address);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace platform::ingress
