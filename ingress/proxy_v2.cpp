#include "ingress/proxy_v2.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace platform::ingress {
namespace {

constexpr std::uint8_t kSignature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::uint8_t kVersion2 = 0x20, kCmdLocal = 0x00, kCmdProxy = 0x01;
constexpr std::uint8_t kTcp4 = 0x11, kTcp6 = 0x21, kUnspec = 0x00;
constexpr std::uint8_t kTlvAuthority = 0x02;

SocketAddress mapped(const SocketAddress& e) {
  if (e.v6) return e;
  SocketAddress m;
  m.v6 = true;
  m.addr[10] = m.addr[11] = 0xff;
  std::memcpy(m.addr + 12, e.addr, 4);
  m.port = e.port;
  return m;
}

void put16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v & 0xff));
}

}  // namespace

std::optional<SocketAddress> SocketAddress::parse(const std::string& address, std::uint16_t port) {
  SocketAddress e;
  e.port = port;
  if (::inet_pton(AF_INET, address.c_str(), e.addr) == 1) return e;
  e.v6 = true;
  if (::inet_pton(AF_INET6, address.c_str(), e.addr) == 1) return e;
  return std::nullopt;
}

SocketAddress SocketAddress::from(const sockaddr* sa) {
  SocketAddress e;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    std::memcpy(e.addr, &in->sin_addr, 4);
    e.port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    e.v6 = true;
    std::memcpy(e.addr, &in6->sin6_addr, 16);
    e.port = ntohs(in6->sin6_port);
  }
  return e;
}

std::string SocketAddress::address() const {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(v6 ? AF_INET6 : AF_INET, addr, buf, sizeof buf);
  return buf;
}

std::vector<std::uint8_t> encode_proxy_v2(const ProxyHeader& h) {
  std::vector<std::uint8_t> out(std::begin(kSignature), std::end(kSignature));
  if (h.local) {
    out.push_back(kVersion2 | kCmdLocal);
    out.push_back(kUnspec);
    put16(out, 0);
    return out;
  }
  const bool v6 = h.source.v6 || h.destination.v6;
  const SocketAddress src = v6 ? mapped(h.source) : h.source, dst = v6 ? mapped(h.destination) : h.destination;
  const std::string authority = h.authority.substr(0, 255);
  const std::size_t addresses = v6 ? 36 : 12;
  const std::size_t tlvs = authority.empty() ? 0 : 3 + authority.size();
  out.reserve(16 + addresses + tlvs);
  out.push_back(kVersion2 | kCmdProxy);
  out.push_back(v6 ? kTcp6 : kTcp4);
  put16(out, static_cast<std::uint16_t>(addresses + tlvs));
  const std::size_t n = v6 ? 16 : 4;
  out.insert(out.end(), src.addr, src.addr + n);
  out.insert(out.end(), dst.addr, dst.addr + n);
  put16(out, src.port);
  put16(out, dst.port);
  if (!authority.empty()) {
    out.push_back(kTlvAuthority);
    put16(out, static_cast<std::uint16_t>(authority.size()));
    out.insert(out.end(), authority.begin(), authority.end());
  }
  return out;
}

ProxyParse parse_proxy_v2(std::span<const std::uint8_t> b) {
  ProxyParse p;
  auto invalid = [&](std::string why) {
    p.status = ProxyParse::Status::invalid;
    p.error = std::move(why);
    return p;
  };
  const std::size_t sig = std::min<std::size_t>(b.size(), sizeof kSignature);
  if (!std::equal(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(sig), kSignature))
    return invalid("not a PROXY v2 signature");
  if (b.size() < 16) return p;
  if ((b[12] & 0xF0) != kVersion2) return invalid("not version 2");
  const std::uint8_t cmd = b[12] & 0x0F;
  if (cmd != kCmdLocal && cmd != kCmdProxy) return invalid("unknown command");
  const std::size_t len = (static_cast<std::size_t>(b[14]) << 8) | b[15];
  if (b.size() < 16 + len) return p;
  p.length = 16 + len;
  auto body = b.subspan(16, len);
  if (cmd == kCmdLocal) {
    p.header.local = true;
    p.status = ProxyParse::Status::ok;
    return p;
  }
  std::size_t addresses = 0;
  if (b[13] == kTcp4) addresses = 12;
  else if (b[13] == kTcp6) addresses = 36;
  else return invalid("not TCP over IPv4 or IPv6");
  if (len < addresses) return invalid("the addresses do not fit its length");
  const bool v6 = b[13] == kTcp6;
  const std::size_t n = v6 ? 16 : 4;
  p.header.source.v6 = p.header.destination.v6 = v6;
  std::memcpy(p.header.source.addr, body.data(), n);
  std::memcpy(p.header.destination.addr, body.data() + n, n);
  p.header.source.port = static_cast<std::uint16_t>((body[2 * n] << 8) | body[2 * n + 1]);
  p.header.destination.port = static_cast<std::uint16_t>((body[2 * n + 2] << 8) | body[2 * n + 3]);
  auto tlvs = body.subspan(addresses);
  while (!tlvs.empty()) {
    if (tlvs.size() < 3) return invalid("a TLV is cut short");
    const std::size_t tlen = (static_cast<std::size_t>(tlvs[1]) << 8) | tlvs[2];
    if (tlvs.size() < 3 + tlen) return invalid("a TLV runs past the header");
    if (tlvs[0] == kTlvAuthority) p.header.authority.assign(tlvs.begin() + 3, tlvs.begin() + 3 + static_cast<std::ptrdiff_t>(tlen));
    tlvs = tlvs.subspan(3 + tlen);
  }
  p.status = ProxyParse::Status::ok;
  return p;
}

}  // namespace platform::ingress
