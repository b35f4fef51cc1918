#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace platform {

// "250ms", "30s", "5m", "2h", "1h30m", or a bare number of seconds. Returns nullopt when malformed.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view s);
std::string format_duration(std::chrono::milliseconds d);

// "YYYY-MM-DDTHH:MM:SS[.fraction]Z" naming a real moment (no February 30th), as PostgreSQL's
// timestamptz accepts it: what agents send for when a log line or a change happened.
bool is_utc_time(std::string_view s);

}  // namespace platform
