#include "ingress/client_hello.h"

#include <algorithm>
#include <string>
#include <vector>

namespace platform::ingress {
namespace {

constexpr std::uint8_t kHandshake = 22;
constexpr std::uint8_t kClientHello = 1;
constexpr std::uint16_t kServerNameExtension = 0;
constexpr std::size_t kRecordHeader = 5;
constexpr std::size_t kMaxRecord = 16384 + 2048;  // TLSPlaintext limit, with TLS 1.2's ciphertext slack

using Status = ClientHello::Status;

ClientHello fail(Status s, std::string why) {
  ClientHello h;
  h.status = s;
  h.error = std::move(why);
  return h;
}

// A bounds-checked reader over the handshake message.
struct Reader {
  std::span<const std::uint8_t> b;
  std::size_t at = 0;
  bool ok = true;
  std::size_t left() const { return ok ? b.size() - at : 0; }
  std::uint32_t num(std::size_t n) {
    if (left() < n) {
      ok = false;
      return 0;
    }
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v = (v << 8) | b[at + i];
    at += n;
    return v;
  }
  std::span<const std::uint8_t> take(std::size_t n) {
    if (left() < n) {
      ok = false;
      return {};
    }
    auto s = b.subspan(at, n);
    at += n;
    return s;
  }
};

// The server_name extension's host name: "" when it has none of type host_name.
bool read_server_name(std::span<const std::uint8_t> ext, std::string& out, std::string& why) {
  Reader r{ext};
  const auto list_len = r.num(2);
  auto list = r.take(list_len);
  if (!r.ok || r.left() != 0) return why = "the server_name extension's length is wrong", false;
  Reader names{list};
  while (names.left() > 0) {
    const auto type = names.num(1);
    const auto len = names.num(2);
    auto name = names.take(len);
    if (!names.ok) return why = "a server name runs past its extension", false;
    if (type != 0 || !out.empty()) continue;  // host_name is the only type; the first one counts
    if (len == 0 || len > 253) return why = "the server name is empty or longer than 253 bytes", false;
    std::string host(name.begin(), name.end());
    std::transform(host.begin(), host.end(), host.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
    if (host.back() == '.') host.pop_back();  // the root label: "a.example." is "a.example"
    if (host.empty() || host.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-._") != std::string::npos)
      return why = "the server name has characters a host name cannot have", false;
    if (host.front() == '.' || host.back() == '.' || host.find("..") != std::string::npos)
      return why = "the server name has an empty label", false;
    out = std::move(host);
  }
  return true;
}

}  // namespace

ClientHello read_client_hello(std::span<const std::uint8_t> bytes, std::size_t max_hello) {
  // 1. Collect the handshake bytes from consecutive handshake records.
  std::vector<std::uint8_t> hs;
  std::size_t at = 0;
  std::size_t need = 0;  // the handshake message's full length once its header is in
  for (int records = 0;; ++records) {
    if (records == 64) return fail(Status::malformed, "the ClientHello is split into more than 64 records");
    if (bytes.size() - at < 1) break;
    if (bytes[at] != kHandshake)
      return at == 0 ? fail(Status::not_tls, "the first byte is not a TLS handshake record")
                     : fail(Status::malformed, "a record inside the ClientHello is not a handshake record");
    if (bytes.size() - at >= 2 && bytes[at + 1] != 3)
      return fail(at == 0 ? Status::not_tls : Status::malformed, "the record's version is not TLS");
    if (bytes.size() - at < kRecordHeader) break;
    const std::size_t len = (static_cast<std::size_t>(bytes[at + 3]) << 8) | bytes[at + 4];
    if (len == 0) return fail(Status::malformed, "an empty handshake record");
    if (len > kMaxRecord) return fail(Status::malformed, "a TLS record longer than the protocol allows");
    const std::size_t have = std::min(len, bytes.size() - at - kRecordHeader);
    hs.insert(hs.end(), bytes.begin() + static_cast<std::ptrdiff_t>(at + kRecordHeader),
              bytes.begin() + static_cast<std::ptrdiff_t>(at + kRecordHeader + have));
    if (need == 0 && hs.size() >= 4) {
      if (hs[0] != kClientHello) return fail(Status::malformed, "the first handshake message is not a ClientHello");
      need = 4 + ((static_cast<std::size_t>(hs[1]) << 16) | (static_cast<std::size_t>(hs[2]) << 8) | hs[3]);
      if (need > max_hello)
        return fail(Status::too_large, "the ClientHello is " + std::to_string(need) + " bytes, more than the limit of " +
                                           std::to_string(max_hello));
    }
    if (need != 0 && hs.size() >= need) break;
    if (have < len) break;  // the rest of this record has not arrived
    at += kRecordHeader + len;
  }
  if (need == 0 || hs.size() < need) {
    ClientHello h;
    h.hello_bytes = need;
    return h;  // need_more
  }

  // 2. Parse the ClientHello body.
  Reader r{std::span<const std::uint8_t>(hs).subspan(4, need - 4)};
  const auto version = r.num(2);
  if (r.ok && (version >> 8) != 3) return fail(Status::malformed, "the ClientHello's version is not TLS");
  r.take(32);                                   // random
  r.take(r.num(1));                             // session id
  const auto suites = r.num(2);
  if (r.ok && (suites < 2 || suites % 2 != 0)) return fail(Status::malformed, "the cipher suite list is malformed");
  r.take(suites);
  const auto compression = r.num(1);
  if (r.ok && compression < 1) return fail(Status::malformed, "the compression method list is empty");
  r.take(compression);
  if (!r.ok) return fail(Status::malformed, "the ClientHello ends before its extensions");
  ClientHello out;
  out.status = Status::ok;
  out.hello_bytes = need;
  if (r.left() == 0) return out;  // no extensions (an old client): no SNI
  const auto ext_len = r.num(2);
  auto exts = r.take(ext_len);
  if (!r.ok || r.left() != 0) return fail(Status::malformed, "the extensions' length does not match the ClientHello's");
  Reader e{exts};
  bool seen = false;
  while (e.left() > 0) {
    const auto type = e.num(2);
    const auto len = e.num(2);
    auto data = e.take(len);
    if (!e.ok) return fail(Status::malformed, "an extension runs past the ClientHello");
    if (type != kServerNameExtension) continue;
    if (seen) return fail(Status::malformed, "two server_name extensions");
    seen = true;
    std::string why;
    if (!read_server_name(data, out.sni, why)) return fail(Status::malformed, why);
  }
  return out;
}

bool valid_route_hostname(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  std::string rest = name;
  if (rest.rfind("*.", 0) == 0) rest = rest.substr(2);
  if (rest.empty()) return false;
  std::size_t start = 0;
  while (start <= rest.size()) {
    auto dot = rest.find('.', start);
    if (dot == std::string::npos) dot = rest.size();
    const auto label = rest.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-' ||
        label.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos)
      return false;
    start = dot + 1;
    if (dot == rest.size()) break;
  }
  return true;
}

}  // namespace platform::ingress
