#pragma once
// One HTTP/1.1 exchange over plain TCP or TLS (certificate and host name verified against the system's
// trust store). Internal to the OCI client; keeps Beast and Asio out of every other header.
#include <chrono>
#include <map>
#include <string>

#include "engine/oci/registry.h"

namespace platform::oci {

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

// Throws PlatformError(unavailable) on connection, TLS or protocol failures, and timed_out on the deadline.
HttpResult exchange(const Url& url, const std::string& method, const std::map<std::string, std::string>& headers,
                    const std::string& body, std::chrono::milliseconds timeout, std::size_t body_limit);

}  // namespace platform::oci
