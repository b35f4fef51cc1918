#include "agent/files.h"

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

}  // namespace platform::agent
