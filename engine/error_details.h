#pragma once
// An error with structured details (each an object with at least "text"): every manifest diagnostic,
// every key a deploy is missing. The API sends them as problem+json "details"; the CLI prints each
// detail's text in a terminal and passes them on as error.details with -o json.
#include <string>

#include "engine/error.h"
#include "engine/json.h"

namespace platform {

class DetailedError : public PlatformError {
 public:
  DetailedError(Error e, Json details, std::string request_id = {})
      : PlatformError(std::move(e)), details_(std::move(details)) {
    request_id_ = std::move(request_id);
  }
  const Json& details() const { return details_; }

 private:
  Json details_;
};

}  // namespace platform
