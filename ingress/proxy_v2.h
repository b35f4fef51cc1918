#pragma once
// PROXY protocol version 2 (HAProxy's proxy-protocol.txt, section 2.2): the binary header the edge
// sends to a backend that opted in, before any payload and in the same send, so the app learns the
// client's address. TCP over IPv4 for IPv4 clients, TCP over IPv6 for IPv6 ones, and the route's server
// name as the AUTHORITY TLV. The parser is for tests, tools and fuzzing (tests/fuzz/proxy_v2_fuzz.cpp).
#include <netinet/in.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace platform::ingress {

// An address and port, IPv4 or IPv6.
struct SocketAddress {
  bool v6 = false;
  std::uint8_t addr[16] = {};  // IPv4 in the first 4 bytes
  std::uint16_t port = 0;
  static std::optional<SocketAddress> parse(const std::string& address, std::uint16_t port);  // "192.0.2.1", "2001:db8::1"
  static SocketAddress from(const sockaddr* sa);                                                // AF_INET or AF_INET6
  std::string address() const;                                                            // text form
};

struct ProxyHeader {
  bool local = false;        // LOCAL command (a health check of the proxy itself): no addresses
  SocketAddress source, destination;
  std::string authority;     // PP2_TYPE_AUTHORITY: the host name the client asked for (SNI); "" none
};

// The whole header. Mixed families (an IPv4 client on an IPv6 listener) are sent as TCP over IPv6 with
// the IPv4 address mapped (::ffff:a.b.c.d). `authority` longer than 255 bytes is cut.
std::vector<std::uint8_t> encode_proxy_v2(const ProxyHeader& header);

struct ProxyParse {
  enum class Status { need_more, ok, invalid };
  Status status = Status::need_more;
  ProxyHeader header;
  std::size_t length = 0;  // the header's bytes (payload follows) when ok
  std::string error;       // why, when invalid
};
ProxyParse parse_proxy_v2(std::span<const std::uint8_t> bytes);

}  // namespace platform::ingress
