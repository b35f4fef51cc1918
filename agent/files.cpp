#include "agent/files.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "engine/error.h"

namespace platform::agent {

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_atomically(const std::filesystem::path& p, const std::string& content) {
  const auto tmp = p.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    out.flush();
    if (!out) throw PlatformError(ErrorCode::internal, "cannot write " + tmp, "Check the agent's disk.");
  }
  std::filesystem::rename(tmp, p);
}

std::string utc_time(std::chrono::system_clock::time_point t) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count() % 1000000;
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:06}Z", fmt::gmtime(std::chrono::system_clock::to_time_t(t)), us);
}

std::string utc_now() { return utc_time(std::chrono::system_clock::now()); }

}  // namespace platform::agent
