#pragma once
// One HTTP/1.1 exchange over plain TCP or TLS (certificate and host name verified against the system's
// trust store). Internal to the OCI client; keeps Beast and Asio out of every other header.
#include <chrono>
#include <map>
#include <functional>
#include <string>
#include <string_view>

#include "engine/oci/registry.h"

namespace platform::oci {

using BodySink = std::function<void(std::string_view)>;

struct Url {
  bool tls = true;
  std::string host;    // without brackets
  std::string port;
  std::string target;  // path and query
  std::string str() const;
};

// Absolute http:// or https:// URLs only; throws PlatformError(unavailable) for anything else (it came
// from a registry's answer, not from the user).
Url parse_url(const std::string& text);

// Throws PlatformError(unavailable) on connection, TLS or protocol failures, and timed_out when the peer
// is silent for `timeout` (an inactivity deadline, so large bodies may take longer). With a sink, the
// body of a 200 answer goes to it in chunks (no size limit) instead of into HttpResult::body.
HttpResult exchange(const Url& url, const std::string& method, const std::map<std::string, std::string>& headers,
                    const std::string& body, std::chrono::milliseconds timeout, std::size_t body_limit,
                    const BodySink* sink = nullptr);

}  // namespace platform::oci
