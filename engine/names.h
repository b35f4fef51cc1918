#pragma once
// The naming rule shared by resources (orgs, projects, apps, envs) and the names inside a manifest
// (processes, volumes, endpoints): DNS-label-like, so a name can appear in hostnames and paths.
#include <string>
#include <string_view>

namespace platform {

inline constexpr std::string_view kNameRule =
    "Use 1-63 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-'.";

inline bool valid_name(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 63 && name[0] >= 'a' && name[0] <= 'z' && name.back() != '-';
  for (char c : name) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
  return ok;
}

// The rule, and for a name that is one easy step from a valid one (capitals, '_', '.' or spaces) the
// valid one: "... Did you mean \"my-shop\"?" for "My_Shop".
inline std::string name_rule_for(std::string_view name) {
  std::string fixed;
  for (char c : name.substr(0, 80)) {
    if (c >= 'A' && c <= 'Z') fixed += static_cast<char>(c - 'A' + 'a');
    else if (c == '_' || c == '.' || c == ' ') fixed += '-';
    else fixed += c;
  }
  std::string out(kNameRule);
  if (fixed != name && valid_name(fixed)) out += " Did you mean \"" + fixed + "\"?";
  return out;
}

// Names of environment variables (config, secrets): letters, digits and '_', not starting with a digit,
// at most 128 characters. PLATFORM_* is reserved for the platform; callers check that where it applies.
inline constexpr std::string_view kVarNameRule = "Use letters, digits and '_', not starting with a digit.";

inline bool valid_var_name(std::string_view k) {
  if (k.empty() || k.size() > 128 || (k[0] >= '0' && k[0] <= '9')) return false;
  for (char c : k)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}

}  // namespace platform
