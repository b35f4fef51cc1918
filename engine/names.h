#pragma once
// The naming rule shared by resources (orgs, projects, apps, envs) and the names inside a manifest
// (processes, volumes, endpoints): DNS-label-like, so a name can appear in hostnames and paths.
#include <string_view>

namespace platform {

inline constexpr std::string_view kNameRule =
    "Use 1-63 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-'.";

inline bool valid_name(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 63 && name[0] >= 'a' && name[0] <= 'z' && name.back() != '-';
  for (char c : name) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
  return ok;
}

}  // namespace platform
