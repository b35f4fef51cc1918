// The TLS ClientHello reader on arbitrary bytes. Oracles: it never reads out of bounds (ASan); a
// verdict is the same whether the bytes come at once or in two pieces (need_more on the prefix, then
// the same answer); an SNI it returns is a lowercase host name without a trailing dot.
#include <cstddef>
#include <cstdint>
#include <span>

#include "ingress/client_hello.h"

using platform::ingress::ClientHello;
using platform::ingress::read_client_hello;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 64 * 1024) return 0;
  const std::span<const std::uint8_t> all(data, size);
  const auto whole = read_client_hello(all, 4096);
  if (whole.status == ClientHello::Status::ok) {
    const auto& s = whole.sni;
    if (!s.empty() && (s.back() == '.' || s.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-._") != std::string::npos))
      __builtin_trap();
    // Any prefix is either need_more or the same kind of verdict: never ok with a different name.
    const auto half = read_client_hello(all.first(size / 2), 4096);
    if (half.status == ClientHello::Status::ok && half.sni != whole.sni) __builtin_trap();
    if (half.status == ClientHello::Status::not_tls || half.status == ClientHello::Status::malformed) __builtin_trap();
  }
  (void)platform::ingress::valid_route_hostname(std::string(reinterpret_cast<const char*>(data), std::min<std::size_t>(size, 300)));
  return 0;
}
