#include "engine/ids.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cctype>
#include <chrono>
#include <stdexcept>

namespace platform {
namespace {
constexpr std::string_view kAlphabet = "0123456789abcdefghjkmnpqrstvwxyz";

void random_bytes(std::uint8_t* out, int n) {
  if (RAND_bytes(out, n) != 1) throw std::runtime_error("RAND_bytes failed");
}
}  // namespace

Uuid new_uuid_v7() {
  Uuid u{};
  random_bytes(u.data(), 16);
  auto ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count());
  for (int i = 0; i < 6; ++i) u[i] = static_cast<std::uint8_t>(ms >> (8 * (5 - i)));
  u[6] = static_cast<std::uint8_t>((u[6] & 0x0f) | 0x70);  // version 7
  u[8] = static_cast<std::uint8_t>((u[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return u;
}

Uuid uuid_from_name(std::string_view name) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(name.data(), name.size(), digest, &len, EVP_sha256(), nullptr);
  Uuid u{};
  for (int i = 0; i < 16; ++i) u[i] = digest[i];
  u[6] = static_cast<std::uint8_t>((u[6] & 0x0f) | 0x80);  // version 8 (custom)
  u[8] = static_cast<std::uint8_t>((u[8] & 0x3f) | 0x80);
  return u;
}

std::string uuid_to_string(const Uuid& u) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
    s.push_back(hex[u[i] >> 4]);
    s.push_back(hex[u[i] & 0xf]);
  }
  return s;
}

std::string base32_encode(const Uuid& u) {
  // 128 bits as 26 groups of 5 bits, with two zero bits in front (like ULID).
  std::string out(26, '0');
  unsigned __int128 v = 0;
  for (auto b : u) v = (v << 8) | b;
  for (int i = 25; i >= 0; --i) {
    out[i] = kAlphabet[static_cast<std::size_t>(v & 0x1f)];
    v >>= 5;
  }
  return out;
}

std::optional<Uuid> base32_decode(std::string_view s) {
  if (s.size() != 26) return std::nullopt;
  unsigned __int128 v = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto pos = kAlphabet.find(s[i]);
    if (pos == std::string_view::npos) return std::nullopt;
    if (i == 0 && pos > 7) return std::nullopt;  // would overflow 128 bits
    v = (v << 5) | pos;
  }
  Uuid u{};
  for (int i = 15; i >= 0; --i) {
    u[i] = static_cast<std::uint8_t>(v & 0xff);
    v >>= 8;
  }
  return u;
}

std::string new_id(std::string_view prefix) {
  return std::string(prefix) + "_" + base32_encode(new_uuid_v7());
}

std::string id_from_name(std::string_view prefix, std::string_view name) {
  return std::string(prefix) + "_" + base32_encode(uuid_from_name(name));
}

bool looks_like_id(std::string_view s, std::string* prefix_out) {
  auto us = s.find('_');
  if (us == std::string_view::npos || us == 0 || us > 8) return false;
  auto prefix = s.substr(0, us);
  for (char c : prefix)
    if (c < 'a' || c > 'z') return false;
  if (!base32_decode(s.substr(us + 1))) return false;
  if (prefix_out) *prefix_out = std::string(prefix);
  return true;
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

}  // namespace platform
