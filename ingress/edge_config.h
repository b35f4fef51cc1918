#pragma once
// What the edge serves, as one immutable snapshot (docs/edge.md#config): explicit TCP endpoints on ports
// of their own, and the shared TLS listener's routes by server name, each with its healthy backends and
// whether the backend wants PROXY v2. The control plane will serve it by long poll; `platform-edge
// --config FILE` reads it from a file. A snapshot that does not validate is refused whole, so the edge
// keeps serving the last good one.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/json.h"

namespace platform::ingress {

struct Address {
  std::string ip;  // "::1", "127.0.0.1", "2001:db8::10"
  std::uint16_t port = 0;
  bool v6() const { return ip.find(':') != std::string::npos; }
  std::string str() const { return v6() ? "[" + ip + "]:" + std::to_string(port) : ip + ":" + std::to_string(port); }
  bool operator==(const Address&) const = default;
};

struct Target {
  std::string id, name;           // the endpoint's or route's id, and a name for logs and metrics
  bool proxy_v2 = false;          // send a PROXY v2 header first
  int max_connections = 0;        // 0: only the global limit
  std::vector<Address> backends;  // healthy instances only; none: connections are refused
};

struct Endpoint : Target {
  std::vector<Address> listen;    // IPv6 by default; IPv4 only with the add-on
};

struct Route : Target {
  std::vector<std::string> hostnames;  // "app.example.com" or "*.example.com"
};

struct Limits {
  int max_connections = 10000;         // across the edge
  int connect_timeout_ms = 5000;       // to a backend
  int idle_timeout_ms = 300000;        // no bytes either way
  int hello_timeout_ms = 10000;        // for a whole ClientHello
  int max_hello_bytes = 16384;
};

struct EdgeConfig {
  std::int64_t version = 0;
  Limits limits;
  std::vector<Endpoint> endpoints;
  std::vector<Address> tls_listen;     // the shared TLS listeners (port 443 in production)
  std::vector<Route> routes;
  // The route holding `sni`: an exact name first, else the longest matching "*." suffix; nullptr: none.
  const Route* route_for(const std::string& sni) const;
};

// Throws PlatformError(invalid_request) naming the first problem (a bad address or port, a port used
// twice, a hostname two routes hold, an unknown field).
std::shared_ptr<const EdgeConfig> parse_edge_config(const Json& j);

}  // namespace platform::ingress
