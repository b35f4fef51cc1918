#pragma once
// Transport-neutral request and response: handlers never see Beast.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/json.h"

namespace platform::api {

struct Request {
  std::string method;  // "GET", "POST", "DELETE", ...
  std::string path;    // without the query string
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string request_id;  // assigned by the server: req_...
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
  std::string param(const std::string& name) const {
    auto it = query.find(name);
    return it == query.end() ? std::string() : it->second;
  }
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

Response json_response(int status, const Json& body);
// application/problem+json with the stable code, message, hint and the request id.
Response problem(const Error& e, const std::string& request_id, const Json& details = nullptr);

// Path parameters captured by the router, e.g. {"org": "acme"}.
using Params = std::map<std::string, std::string>;

}  // namespace platform::api
