#pragma once
// The edge's data path (docs/edge.md#data-path): it connects a client's connection to a backend and
// copies bytes both ways until both directions have ended, with half-close forwarded, a reset passed on
// as a reset, and connect and idle timeouts. A readiness loop of the edge's own (epoll, edge-triggered,
// with EPOLLRDHUP and the event's error flags), run as handlers on the edge's Asio threads: a short read
// means the socket is drained, so each message costs one recv() instead of two, and a reset that
// arrives together with the last bytes is still seen. Why not Asio's sockets:
// docs/decisions/0008-edge-data-path.md. Asio stays inside relay.cpp.
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ingress/edge_config.h"

namespace boost::asio {
class io_context;
}

namespace platform::ingress {

// `a` as a socket address; false when its ip is not an address.
bool to_sockaddr(const Address& a, sockaddr_storage& ss, socklen_t& len);

class BackendHealth;

// Counters the relay adds to; owned by the edge, outliving the relay.
struct RelayCounters {
  std::atomic<std::uint64_t>* forwarded = nullptr;       // connected to a backend
  std::atomic<std::uint64_t>* connect_failed = nullptr;  // no backend answered in time
  std::atomic<std::uint64_t>* idle_closed = nullptr;
  std::atomic<std::uint64_t>* to_backend = nullptr;      // payload bytes, each way
  std::atomic<std::uint64_t>* to_client = nullptr;
};

// One accepted connection for the relay to forward.
struct RelayJob {
  int client = -1;                              // connected; the relay owns (and closes) it from add() on
  const std::vector<Address>* backends = nullptr;  // tried in turn from `first_backend`; kept alive by `keep`
  std::size_t first_backend = 0;
  std::vector<std::uint8_t> first;              // sent to the backend before anything else (PROXY header, hello)
  std::size_t first_uncounted = 0;              // leading bytes of `first` that are not payload (the header)
  std::chrono::milliseconds connect_timeout{5000}, idle_timeout{300000};
  // Decremented when the connection ends, however it ends: the edge's open connections and its target's.
  std::atomic<std::int64_t>* active = nullptr;
  std::atomic<int>* target_active = nullptr;
  std::shared_ptr<const void> keep;             // what `backends`, `target_id` and `target_active` live in
  // Where each connect's outcome is recorded (docs/edge.md#backends-the-edge-cannot-reach), or null.
  BackendHealth* health = nullptr;
  const std::string* target_id = nullptr;
};

class Relay {
 public:
  // `shards` independent loops (one per edge thread is right): a connection stays on one.
  Relay(boost::asio::io_context& io, RelayCounters counters, int shards);
  ~Relay();  // closes every connection it holds; run after the io_context's threads have stopped
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  void add(RelayJob job);  // from any thread

  struct Shard;

 private:
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<unsigned> next_{0};
};

}  // namespace platform::ingress
