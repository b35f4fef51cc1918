#pragma once
// One error model for the API (problem+json) and the CLI (exit codes). See docs/errors.md.
#include <stdexcept>
#include <string>
#include <string_view>

namespace platform {

enum class ErrorCode {
  internal,              // 500, exit 1
  unavailable,           // 503, exit 1 (a dependency is down; retry)
  invalid_request,       // 400, exit 2 (malformed JSON, wrong types, unknown fields, bad flags)
  payload_too_large,     // 413, exit 2
  headers_too_large,     // 431, exit 2
  request_timeout,       // 408, exit 4
  timed_out,             // 504/—, exit 4 (wait did not converge in time)
  capacity,              // 409, exit 5 (placement or capacity)
  version_conflict,      // 409, exit 6 (stale expected version)
  name_taken,            // 409, exit 6
  precondition_failed,   // 412, exit 6 (children exist, idempotency key reused ...)
  idempotency_conflict,  // 422, exit 6
  not_found,             // 404, exit 7
  unauthenticated,       // 401, exit 8
  method_not_allowed,    // 405, exit 2
  too_many_connections,  // 503, exit 1
  not_supported,         // 501, exit 10 (not in v1, with what to do instead)
  interrupted,           // —, exit 130
  failed,                // 409, exit 1 (what `wait` waited on failed: an instance gave up, an image would not start)
};

std::string_view to_string(ErrorCode c);
ErrorCode error_code_from_string(std::string_view s);  // unknown strings map to internal
int http_status(ErrorCode c);
int exit_code(ErrorCode c);

struct Error {
  ErrorCode code = ErrorCode::internal;
  std::string message;  // what is wrong, in words
  std::string hint;     // what to do about it
};

// Thrown inside a module; turned into a value (problem+json, CLI error document) at the boundary.
class PlatformError : public std::runtime_error {
 public:
  explicit PlatformError(Error e) : std::runtime_error(e.message), error_(std::move(e)) {}
  PlatformError(ErrorCode code, std::string message, std::string hint = {})
      : PlatformError(Error{code, std::move(message), std::move(hint)}) {}
  const Error& error() const { return error_; }
  const std::string& request_id() const { return request_id_; }

 protected:
  Error error_;
  std::string request_id_;
};

// An error the API answered, carrying the server's request id for support.
class PlatformErrorWithRequest : public PlatformError {
 public:
  PlatformErrorWithRequest(Error e, std::string request_id) : PlatformError(std::move(e)) {
    request_id_ = std::move(request_id);
  }
};

}  // namespace platform
