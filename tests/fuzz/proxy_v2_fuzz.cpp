// The PROXY v2 header on arbitrary bytes. Oracles: the parser never reads out of bounds (ASan); a header
// it accepts encodes back to a header that parses to the same addresses, ports and authority.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "ingress/proxy_v2.h"

using namespace platform::ingress;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 70 * 1024) return 0;
  const auto p = parse_proxy_v2(std::span<const std::uint8_t>(data, size));
  if (p.status != ProxyParse::Status::ok) return 0;
  if (p.length > size) __builtin_trap();
  const auto bytes = encode_proxy_v2(p.header);
  const auto again = parse_proxy_v2(bytes);
  if (again.status != ProxyParse::Status::ok || again.length != bytes.size()) __builtin_trap();
  const auto &a = p.header, &b = again.header;
  if (a.local != b.local) __builtin_trap();
  if (a.local) return 0;
  if (a.source.port != b.source.port || a.destination.port != b.destination.port ||
      std::memcmp(a.source.addr, b.source.addr, 16) != 0 || std::memcmp(a.destination.addr, b.destination.addr, 16) != 0 ||
      a.authority.substr(0, 255) != b.authority)
    __builtin_trap();
  return 0;
}
