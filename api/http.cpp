#include "api/http.h"

namespace platform::api {

Response json_response(int status, const Json& body) {
  Response r;
  r.status = status;
  r.body = body.dump();
  return r;
}

Response problem(const Error& e, const std::string& request_id, const Json& details) {
  Response r;
  r.status = http_status(e.code);
  r.content_type = "application/problem+json";
  Json body = {{"type", "https://platform.dev/problems/" + std::string(to_string(e.code))},
               {"title", std::string(to_string(e.code))},
               {"status", r.status},
               {"code", std::string(to_string(e.code))},
               {"message", e.message},
               {"hint", e.hint},
               {"request_id", request_id}};
  if (!details.is_null()) body["details"] = details;
  r.body = body.dump();
  return r;
}

}  // namespace platform::api
