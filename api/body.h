#pragma once
// Strict request bodies: a JSON object with known fields of the right types. Unknown fields are errors
// with a did-you-mean, so a typo never silently changes nothing.
#include <initializer_list>
#include <string>
#include <string_view>

#include "engine/json.h"

namespace platform::api {

enum class FieldType { string, object_of_strings, array_of_strings, boolean, integer, object, array_of_objects };

struct FieldSpec {
  std::string_view name;
  FieldType type;
  bool required = false;
};

// Throws PlatformError(invalid_request) naming the offending field.
Json parse_body(const std::string& body, std::initializer_list<FieldSpec> fields);

// Resource names: 1-63 chars of a-z, 0-9 and '-', starting with a letter, not ending with '-'.
void validate_name(const std::string& kind, const std::string& name);

}  // namespace platform::api
