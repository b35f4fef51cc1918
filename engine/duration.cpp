#include "engine/duration.h"

#include <cctype>

namespace platform {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view s) {
  if (s.empty()) return std::nullopt;
  long long total_ms = 0;
  std::size_t i = 0;
  bool any = false;
  while (i < s.size()) {
    long long n = 0;
    std::size_t start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      n = n * 10 + (s[i] - '0');
      if (n > 1'000'000'000LL) return std::nullopt;
      ++i;
    }
    if (i == start) return std::nullopt;
    std::string_view unit;
    std::size_t ustart = i;
    while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
    unit = s.substr(ustart, i - ustart);
    if (unit.empty()) {
      if (any || i != s.size()) return std::nullopt;  // bare number only on its own
      return std::chrono::milliseconds(n * 1000);
    }
    if (unit == "ms") total_ms += n;
    else if (unit == "s") total_ms += n * 1000;
    else if (unit == "m") total_ms += n * 60'000;
    else if (unit == "h") total_ms += n * 3'600'000;
    else if (unit == "d") total_ms += n * 86'400'000;
    else return std::nullopt;
    any = true;
  }
  return std::chrono::milliseconds(total_ms);
}

std::string format_duration(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms < 1000) return std::to_string(ms) + "ms";
  auto s = ms / 1000;
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m" + (s % 60 ? std::to_string(s % 60) + "s" : "");
  if (s < 86400) return std::to_string(s / 3600) + "h" + (s % 3600 / 60 ? std::to_string(s % 3600 / 60) + "m" : "");
  return std::to_string(s / 86400) + "d";
}

}  // namespace platform
