#pragma once
#include <string>

namespace platform::api {
// api/openapi.json, compiled in.
const std::string& openapi_document();
}  // namespace platform::api
