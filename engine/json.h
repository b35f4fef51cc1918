#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace platform {
using Json = nlohmann::json;

// At most `max_bytes` of `s`, cut before a UTF-8 character rather than inside one (Json::dump throws on
// broken UTF-8).
inline std::string utf8_prefix(const std::string& s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  std::size_t n = max_bytes;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}
}  // namespace platform
