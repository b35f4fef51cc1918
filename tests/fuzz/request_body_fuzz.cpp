// Request bodies: strict JSON fields of every type, resource names, did-you-mean on unknown fields.
#include <cstddef>
#include <cstdint>
#include <string>

#include "api/body.h"
#include "engine/error.h"
#include "engine/suggest.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace platform::api;
  const std::string body(reinterpret_cast<const char*>(data), size);
  try {
    auto j = parse_body(body, {{"name", FieldType::string, true},
                               {"labels", FieldType::object_of_strings},
                               {"enabled", FieldType::boolean},
                               {"replicas", FieldType::integer}});
    validate_name("app", j["name"].get<std::string>());
  } catch (const platform::PlatformError&) {
  }
  try {
    validate_name("project", body);
  } catch (const platform::PlatformError&) {
  }
  (void)platform::did_you_mean(body, {"name", "description", "labels"});
  return 0;
}
