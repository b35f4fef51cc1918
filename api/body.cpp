#include "api/body.h"

#include "engine/names.h"
#include "engine/suggest.h"

#include <algorithm>
#include <unordered_set>
#include <vector>

#include "engine/error.h"

namespace platform::api {
namespace {
const char* type_name(FieldType t) {
  switch (t) {
    case FieldType::string: return "a string";
    case FieldType::object_of_strings: return "an object of string values";
    case FieldType::array_of_strings: return "an array of strings";
    case FieldType::boolean: return "a boolean";
    case FieldType::integer: return "an integer";
    case FieldType::object: return "an object";
    case FieldType::array_of_objects: return "an array of objects";
  }
  return "?";
}

bool has_type(const Json& v, FieldType t) {
  switch (t) {
    case FieldType::string: return v.is_string();
    case FieldType::boolean: return v.is_boolean();
    case FieldType::integer: return v.is_number_integer();
    case FieldType::object: return v.is_object();
    case FieldType::array_of_objects:
      return v.is_array() && std::all_of(v.begin(), v.end(), [](const Json& x) { return x.is_object(); });
    case FieldType::array_of_strings:
      return v.is_array() && std::all_of(v.begin(), v.end(), [](const Json& x) { return x.is_string(); });
    case FieldType::object_of_strings:
      return v.is_object() && std::all_of(v.begin(), v.end(), [](const Json& x) { return x.is_string(); });
  }
  return false;
}
}  // namespace

Json parse_body(const std::string& body, std::initializer_list<FieldSpec> fields) {
  Json j;
  // A key twice in one object is refused: parsers disagree on which one counts (this one keeps the
  // last), so a proxy or a script that reads the first would see another request than we do.
  std::vector<std::unordered_set<std::string>> keys;  // the keys of each object being read, innermost last
  auto strict = [&keys](int, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) keys.emplace_back();
    else if (event == Json::parse_event_t::object_end) keys.pop_back();
    else if (event == Json::parse_event_t::key) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!keys.back().insert(key).second)
        throw PlatformError(ErrorCode::invalid_request, "field \"" + key.substr(0, 80) + "\" appears twice in one object",
                            "Send each field once.");
    }
    return true;
  };
  try {
    j = Json::parse(body.empty() ? std::string("{}") : body, strict);
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
      std::string known;
      std::vector<std::string_view> names;
      for (const auto& f : fields) {
        known += (known.empty() ? "" : ", ") + std::string(f.name);
        names.push_back(f.name);
      }
      auto best = did_you_mean(it.key(), names);
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
  if (!valid_name(name))
    throw PlatformError(ErrorCode::invalid_request, "invalid " + kind + " name \"" + name.substr(0, 80) + "\"",
                        name_rule_for(name));
}

}  // namespace platform::api
