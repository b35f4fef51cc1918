#include "platformd/state_dir.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace platform::dev {
namespace fs = std::filesystem;

std::string default_state_dir() {
  const char* home = std::getenv("HOME");
  const fs::path in_home = fs::path(home && *home ? home : "/root") / ".local/share/platform/dev";
  if (::geteuid() != 0) return in_home.string();
  // A cluster an earlier version made in root's home (where that home was open to others) stays in use.
  if (fs::exists(in_home / "postgres" / "PG_VERSION")) return in_home.string();
  return "/var/lib/platform/dev";
}

}  // namespace platform::dev
