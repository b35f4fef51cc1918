// The normalised manifest printed as TOML (`platform manifest explain`): a valid platform.toml that
// parses back to the same manifest.
#include "engine/manifest/toml.h"

#include <sstream>

#include "engine/manifest/manifest.h"

namespace platform::manifest {
namespace {
toml::array to_array(const Json& j);

toml::table to_table(const Json& j) {
  toml::table t;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const auto& v = it.value();
    if (v.is_object()) t.insert(it.key(), to_table(v));
    else if (v.is_array()) t.insert(it.key(), to_array(v));
    else if (v.is_string()) t.insert(it.key(), v.get<std::string>());
    else if (v.is_boolean()) t.insert(it.key(), v.get<bool>());
    else if (v.is_number_integer()) t.insert(it.key(), v.get<std::int64_t>());
    else if (v.is_number_float()) t.insert(it.key(), v.get<double>());
  }
  return t;
}

toml::array to_array(const Json& j) {
  toml::array a;
  for (const auto& v : j) {
    if (v.is_object()) a.push_back(to_table(v));
    else if (v.is_string()) a.push_back(v.get<std::string>());
    else if (v.is_number_integer()) a.push_back(v.get<std::int64_t>());
  }
  return a;
}
}  // namespace

std::string to_toml(const Manifest& m) {
  std::ostringstream out;
  out << toml::toml_formatter(to_table(to_json(m))) << "\n";
  return out.str();
}

}  // namespace platform::manifest
