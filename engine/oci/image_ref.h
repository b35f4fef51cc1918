#pragma once
// Image references as users write them: [registry/]repository[:tag][@sha256:digest], with Docker's
// conventions (no registry host means Docker Hub; a one-part Docker Hub name lives under library/).
#include <string>

namespace platform::oci {

struct ImageRef {
  std::string registry;    // host[:port] as written, e.g. "127.0.0.1:7071" or "docker.io"
  std::string repository;  // e.g. "sample/echo", "library/nginx"
  std::string tag;         // empty when only a digest is given
  std::string digest;      // "sha256:<64 hex>", or empty

  // The registry's API host: Docker Hub's is registry-1.docker.io.
  std::string api_host() const;
  // Loopback registries (127.0.0.0/8, ::1, localhost) are spoken to over plain HTTP, all others over HTTPS.
  bool loopback() const;
  // registry/repository:tag@digest, omitting what is empty.
  std::string str() const;
};

// Throws PlatformError(invalid_request) naming what is wrong and the accepted form.
ImageRef parse_image_ref(const std::string& text);

// "sha256:" followed by exactly 64 lowercase hex digits.
bool valid_digest(const std::string& d);

}  // namespace platform::oci
