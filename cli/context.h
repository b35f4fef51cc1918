#pragma once
// CLI contexts: named (API URL, token, default org/project/app/env) sets, like kubectl's kubeconfig.
// Stored as JSON at $PLATFORM_CONFIG, else $XDG_CONFIG_HOME/platform/config.json, else
// ~/.config/platform/config.json, with mode 0600 (it holds tokens).
#include <map>
#include <string>

namespace platform::cli {

struct ContextEntry {
  std::string url, token, org, project, app, env;
};

struct Config {
  std::string current;
  std::map<std::string, ContextEntry> contexts;
};

std::string config_path();
Config load_config();                 // an empty Config when the file does not exist
void save_config(const Config& cfg);  // atomic replace, mode 0600

}  // namespace platform::cli
