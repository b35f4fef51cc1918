#include "api/body.h"

#include <algorithm>
#include <vector>

#include "engine/error.h"

namespace platform::api {
namespace {
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

const char* type_name(FieldType t) {
  switch (t) {
    case FieldType::string: return "a string";
    case FieldType::object_of_strings: return "an object of string values";
    case FieldType::boolean: return "a boolean";
    case FieldType::integer: return "an integer";
  }
  return "?";
}

bool has_type(const Json& v, FieldType t) {
  switch (t) {
    case FieldType::string: return v.is_string();
    case FieldType::boolean: return v.is_boolean();
    case FieldType::integer: return v.is_number_integer();
    case FieldType::object_of_strings:
      return v.is_object() && std::all_of(v.begin(), v.end(), [](const Json& x) { return x.is_string(); });
  }
  return false;
}
}  // namespace

std::string did_you_mean(std::string_view word, std::initializer_list<std::string_view> candidates) {
  std::string best;
  std::size_t best_d = 3;
  for (auto c : candidates) {
    auto d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = std::string(c);
    }
  }
  return best;
}

Json parse_body(const std::string& body, std::initializer_list<FieldSpec> fields) {
  Json j;
  try {
    j = Json::parse(body.empty() ? std::string("{}") : body);
  } catch (const Json::exception& e) {  // syntax errors, and numbers out of range (1e999)
    throw PlatformError(ErrorCode::invalid_request,
                        "request body is not valid JSON: " + std::string(e.what()).substr(0, 200),
                        "Send a JSON object, e.g. {\"name\": \"web\"}.");
  }
  if (!j.is_object())
    throw PlatformError(ErrorCode::invalid_request, "request body must be a JSON object",
                        "Send a JSON object, e.g. {\"name\": \"web\"}.");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const FieldSpec* spec = nullptr;
    for (const auto& f : fields)
      if (f.name == it.key()) spec = &f;
    if (!spec) {
      std::string known, best;
      std::size_t best_d = 3;
      for (const auto& f : fields) {
        known += (known.empty() ? "" : ", ") + std::string(f.name);
        if (auto d = edit_distance(it.key(), f.name); d < best_d) best_d = d, best = std::string(f.name);
      }
      throw PlatformError(ErrorCode::invalid_request,
                          "unknown field \"" + it.key() + "\"" + (best.empty() ? "" : " (did you mean \"" + best + "\"?)"),
                          "Known fields: " + known + ".");
    }
    if (!has_type(it.value(), spec->type))
      throw PlatformError(ErrorCode::invalid_request,
                          "field \"" + it.key() + "\" must be " + type_name(spec->type) + ", got " +
                              std::string(it.value().type_name()),
                          "Fix the type of \"" + it.key() + "\".");
  }
  for (const auto& f : fields)
    if (f.required && !j.contains(f.name))
      throw PlatformError(ErrorCode::invalid_request, "missing required field \"" + std::string(f.name) + "\"",
                          "Add \"" + std::string(f.name) + "\" to the request body.");
  return j;
}

void validate_name(const std::string& kind, const std::string& name) {
  bool ok = !name.empty() && name.size() <= 63 && name[0] >= 'a' && name[0] <= 'z' && name.back() != '-';
  for (char c : name) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
  if (!ok)
    throw PlatformError(ErrorCode::invalid_request, "invalid " + kind + " name \"" + name.substr(0, 80) + "\"",
                        "Use 1-63 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-'.");
}

}  // namespace platform::api
