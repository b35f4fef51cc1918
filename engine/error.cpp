#include "engine/error.h"

#include <array>
#include <utility>

namespace platform {
namespace {
struct Row {
  ErrorCode code;
  std::string_view name;
  int http;
  int exit;
};
constexpr std::array kRows = {
    Row{ErrorCode::internal, "internal", 500, 1},
    Row{ErrorCode::unavailable, "unavailable", 503, 1},
    Row{ErrorCode::invalid_request, "invalid_request", 400, 2},
    Row{ErrorCode::payload_too_large, "payload_too_large", 413, 2},
    Row{ErrorCode::headers_too_large, "headers_too_large", 431, 2},
    Row{ErrorCode::request_timeout, "request_timeout", 408, 4},
    Row{ErrorCode::timed_out, "timed_out", 504, 4},
    Row{ErrorCode::capacity, "capacity", 409, 5},
    Row{ErrorCode::version_conflict, "version_conflict", 409, 6},
    Row{ErrorCode::name_taken, "name_taken", 409, 6},
    Row{ErrorCode::precondition_failed, "precondition_failed", 412, 6},
    Row{ErrorCode::idempotency_conflict, "idempotency_conflict", 422, 6},
    Row{ErrorCode::not_found, "not_found", 404, 7},
    Row{ErrorCode::unauthenticated, "unauthenticated", 401, 8},
    Row{ErrorCode::method_not_allowed, "method_not_allowed", 405, 2},
    Row{ErrorCode::too_many_connections, "too_many_connections", 503, 1},
    Row{ErrorCode::not_supported, "not_supported", 501, 10},
    Row{ErrorCode::interrupted, "interrupted", 499, 130},
    Row{ErrorCode::failed, "failed", 409, 1},
};
const Row& row(ErrorCode c) {
  for (const auto& r : kRows)
    if (r.code == c) return r;
  return kRows[0];
}
}  // namespace

std::string_view to_string(ErrorCode c) { return row(c).name; }
int http_status(ErrorCode c) { return row(c).http; }
int exit_code(ErrorCode c) { return row(c).exit; }

ErrorCode error_code_from_string(std::string_view s) {
  for (const auto& r : kRows)
    if (r.name == s) return r.code;
  return ErrorCode::internal;
}

}  // namespace platform
