#pragma once
// A parsed Beast request -> the API's transport-neutral Request: lower-cased header names, the path,
// the decoded query. Apart from server.cpp so the fuzz target (tests/fuzz) runs exactly this code.
// Include only where Beast is already used; widely included headers stay Beast-free.
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "api/http.h"

namespace platform::api {

// Throws PlatformError(invalid_request) for a target that is not origin-form ("/path?query").
Request to_request(const boost::beast::http::request<boost::beast::http::string_body>& msg);

}  // namespace platform::api
