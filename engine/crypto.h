#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace platform {

std::string sha256_hex(std::string_view data);

// SHA-256 of a stream of pieces (a layer downloading).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view piece);
  std::string hex();  // finishes; call once

 private:
  void* ctx_;
};
// A URL-safe random secret of `bytes` random bytes (hex encoded).
std::string random_secret(int bytes = 32);
// `n` bytes from the OS-seeded CSPRNG.
std::string random_bytes(std::size_t n);
std::string hmac_sha256_hex(std::string_view key, std::string_view data);
// Percent-encoding of everything but RFC 3986 unreserved characters (a path segment or query value).
std::string url_encode(std::string_view s);
// Standard base64 with padding; decode refuses anything else (nullopt).
std::string base64_encode(std::string_view data);
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace platform
