#include "api/beast_request.h"

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <cctype>

namespace platform::api {

Request to_request(const boost::beast::http::request<boost::beast::http::string_body>& msg) {
  Request r;
  r.method = std::string(msg.method_string());
  r.body = msg.body();
  for (const auto& f : msg) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = std::string(f.value());
  }
  auto parsed = boost::urls::parse_origin_form(msg.target());
  if (!parsed)
    throw PlatformError(ErrorCode::invalid_request, "malformed request target",
                        "Send an origin-form target such as /v1/orgs?limit=10.");
  for (auto p : parsed->params()) r.query[std::string(p.key)] = std::string(p.value);
  r.path = std::string(parsed->path());
  return r;
}

}  // namespace platform::api
