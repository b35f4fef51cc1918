#pragma once
// What every handler may use. Built once by the server; handlers hold no state of their own.
#include <chrono>
#include <string>
#include <vector>

#include "engine/secrets/secrets.h"

namespace platform::db {
class Pool;
}

namespace platform::api {

class Authenticator;
class Hub;
class Metrics;

struct ListenAddress {  // an address and port the edge listens on
  std::string address;  // "::1", "2001:db8::10"
  int port = 0;
};

struct Context {
  db::Pool& pool;
  Hub& hub;
  Authenticator& auth;
  Metrics& metrics;
  // A mutation waits this long for the projections to fold its events before answering, so that a
  // script's next read sees its write. The receipt says whether they did ("succeeded") or not ("accepted").
  std::chrono::milliseconds apply_wait{2000};
  // Secrets keys, the current one first (empty when the server has no key file).
  std::vector<secrets::Key> secret_keys;
  // How often platform-agent should send a heartbeat (told to it at enrolment and on every heartbeat).
  std::chrono::milliseconds host_heartbeat{5000};
  // The edge's shared TLS listeners (port 443 in production), where SNI routes are served.
  std::vector<ListenAddress> edge_tls_listen;
};

}  // namespace platform::api
