#pragma once
// Warnings the API sends with an answer, in `Warning: 299 - "text"` headers (RFC 7234's form, as
// Kubernetes sends its own): things the caller should act on soon, though the request itself worked.
// The CLI prints each one once on stderr as `warning: text`; stdout (-o json too) is left as it is.
#include <chrono>
#include <string>
#include <vector>

#include "api/auth.h"
#include "api/http.h"

namespace platform::api {

// How far ahead of its expiry a token is warned about.
constexpr std::chrono::hours kTokenExpiryWarning{7 * 24};

// For an authenticated request:
//   - its token expires within kTokenExpiryWarning: when, and how to make its successor;
//   - it comes from a `platform` CLI of another release line than this server (its User-Agent,
//     "platform-cli/0.2.0 (…)"): which, and what to do.
std::vector<std::string> request_warnings(const Principal& p, const Request& req,
                                          std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// The header value for one warning: 299 - "text", with `"` and `\` escaped.
std::string warning_header(const std::string& text);

// (The client reads them with parse_warning_header, api/client.h.)

}  // namespace platform::api
