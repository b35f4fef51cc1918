#include "cli/context.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/error.h"
#include "engine/json.h"

namespace platform::cli {
namespace fs = std::filesystem;

std::string config_path() {
  if (const char* p = std::getenv("PLATFORM_CONFIG"); p && *p) return p;
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x) return std::string(x) + "/platform/config.json";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/root") + "/.config/platform/config.json";
}

Config load_config() {
  Config cfg;
  std::ifstream in(config_path());
  if (!in) return cfg;
  std::stringstream ss;
  ss << in.rdbuf();
  Json j;
  try {
    j = Json::parse(ss.str());
    cfg.current = j.value("current", "");
    const Json contexts = j.value("contexts", Json::object());
    for (auto& [name, c] : contexts.items())
      cfg.contexts[name] = {c.value("url", ""),     c.value("token", ""), c.value("org", ""),
                            c.value("project", ""), c.value("app", ""),   c.value("env", "")};
  } catch (const std::exception& e) {
    throw PlatformError(ErrorCode::invalid_request, "the CLI config " + config_path() + " is not valid: " + e.what(),
                        "Fix or remove the file, then run `platform login` again.");
  }
  return cfg;
}

void save_config(const Config& cfg) {
  Json j = {{"current", cfg.current}, {"contexts", Json::object()}};
  for (const auto& [name, c] : cfg.contexts)
    j["contexts"][name] = {{"url", c.url}, {"token", c.token}, {"org", c.org},
                           {"project", c.project}, {"app", c.app}, {"env", c.env}};
  auto path = fs::path(config_path());
  fs::create_directories(path.parent_path());
  auto tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(2) << "\n";
    if (!out) throw PlatformError(ErrorCode::internal, "cannot write " + tmp.string(), "Check the permissions.");
  }
  ::chmod(tmp.c_str(), 0600);
  fs::rename(tmp, path);
}

}  // namespace platform::cli
