#include "agent/identity.h"

#include <filesystem>
#include <fstream>

#include "engine/error.h"
#include "engine/json.h"

namespace platform::agent {
namespace fs = std::filesystem;

std::optional<Identity> load_identity(const std::string& state_dir) {
  return load_identity_file((fs::path(state_dir) / "host.json").string());
}

std::optional<Identity> load_identity_file(const std::string& file) {
  const fs::path path = file;
  if (!fs::exists(path)) return std::nullopt;
  std::ifstream in(path);
  auto j = Json::parse(in, nullptr, false);
  if (!j.is_object() || !j.contains("host_id") || !j.contains("credential"))
    throw PlatformError(ErrorCode::invalid_request, path.string() + " is not a host identity file",
                        "Move it away and enrol again with a new join token.");
  return Identity{j.value("host_id", ""), j.value("name", ""), j.value("credential", ""), j.value("control", "")};
}

void save_identity(const std::string& state_dir, const Identity& id) {
  fs::create_directories(state_dir);
  const auto path = fs::path(state_dir) / "host.json", tmp = fs::path(state_dir) / "host.json.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    fs::permissions(tmp, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
    out << Json{{"host_id", id.host_id}, {"name", id.name}, {"credential", id.credential}, {"control", id.control}}
               .dump(2)
        << "\n";
    if (!out) throw PlatformError(ErrorCode::internal, "cannot write " + tmp.string(), "Check the state folder.");
  }
  fs::rename(tmp, path);
}

}  // namespace platform::agent
