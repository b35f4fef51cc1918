#pragma once
// The TLS ClientHello reader of the shared 443 listener (docs/edge.md): finds the server name (SNI) a
// client asks for, so the edge can pick a route, without terminating TLS. A pure function over the bytes
// received so far: call it again with more when it says need_more. It handles a hello split across
// TCP segments and across TLS records, refuses what is not TLS at the first byte, and stops at a size
// limit. Fuzzed (tests/fuzz/client_hello_fuzz.cpp).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace platform::ingress {

struct ClientHello {
  enum class Status {
    need_more,   // a valid prefix: read more bytes
    ok,          // a whole ClientHello; `sni` is the server name, "" when it sent none
    not_tls,     // the bytes are not a TLS handshake record
    too_large,   // the hello is longer than the limit
    malformed,   // a TLS handshake, but not a well-formed ClientHello
  };
  Status status = Status::need_more;
  std::string sni;    // lowercase, without a trailing dot
  std::string error;  // why, for not_tls / too_large / malformed
  std::size_t hello_bytes = 0;  // the handshake message's length (with its 4-byte header) once known
};

// `max_hello`: the largest ClientHello handshake message accepted (default 16 KiB; real ones are a few
// hundred bytes to a few KiB).
ClientHello read_client_hello(std::span<const std::uint8_t> bytes, std::size_t max_hello = 16384);

// Whether `name` is a host name a route may hold: 1-253 characters, labels of [a-z0-9-] (1-63, not
// starting or ending with '-'), optionally a leading "*." for a wildcard route.
bool valid_route_hostname(const std::string& name);

}  // namespace platform::ingress
