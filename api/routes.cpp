#include "api/routes.h"

#include <sstream>

namespace platform::api {
namespace {
std::vector<std::string> split(const std::string& path) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : path) {
    if (c == '/') {
      if (!cur.empty()) parts.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) parts.push_back(std::move(cur));
  return parts;
}

bool match_pattern(const std::string& pattern, const std::vector<std::string>& path, Params& params) {
  auto pat = split(pattern);
  if (pat.size() != path.size()) return false;
  Params captured;
  for (std::size_t i = 0; i < pat.size(); ++i) {
    if (pat[i].size() > 2 && pat[i].front() == '{' && pat[i].back() == '}') {
      captured[pat[i].substr(1, pat[i].size() - 2)] = path[i];
    } else if (pat[i] != path[i]) {
      return false;
    }
  }
  params = std::move(captured);
  return true;
}
}  // namespace

const std::vector<Route>& routes() {
  static const std::vector<Route> all = [] {
    std::vector<Route> r;
    add_system_routes(r);
    add_resource_routes(r);
    add_event_routes(r);
    add_config_routes(r);
    add_secrets_routes(r);
    add_deploy_routes(r);
    add_instance_routes(r);
    add_host_routes(r);
    add_token_routes(r);
    add_network_routes(r);
    add_exec_routes(r);
    add_session_routes(r);
    return r;
  }();
  return all;
}

const Route* match(const std::string& method, const std::string& path, Params& params, bool* path_matched) {
  auto parts = split(path);
  *path_matched = false;
  for (const auto& r : routes()) {
    Params p;
    if (!match_pattern(r.pattern, parts, p)) continue;
    *path_matched = true;
    if (r.method == method) {
      params = std::move(p);
      return &r;
    }
  }
  return nullptr;
}

}  // namespace platform::api
