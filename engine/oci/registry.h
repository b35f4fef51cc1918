#pragma once
// A client of the OCI distribution API (https://github.com/opencontainers/distribution-spec): resolves a
// tag to the digest of its linux/amd64 image manifest, verifying every byte it is given against its
// digest. Handles the registry's auth challenge (anonymous Bearer tokens from the realm it names), OCI
// image indexes and Docker manifest lists, and redirects. Blocking; every request has a deadline.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "engine/json.h"
#include "engine/oci/image_ref.h"

namespace platform::oci {

inline constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* kDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr const char* kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";

struct RegistryOptions {
  std::chrono::milliseconds timeout{15000};  // of inactivity: each step (connect, handshake, write, every read) within it
  std::string os = "linux", architecture = "amd64";
};

struct ResolvedImage {
  ImageRef ref;               // as asked
  std::string digest;         // the image manifest for os/architecture: what a release pins
  std::string media_type;     // of that manifest
  std::string index_digest;   // the index or manifest list the tag pointed at, if it was one
  std::string config_digest;  // the image config blob
  std::int64_t size = 0;      // manifest bytes + config + layers (compressed)
  Json to_json() const;
};

struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

class RegistryClient {
 public:
  explicit RegistryClient(RegistryOptions options = {});

  // Tag (or digest) -> the linux/amd64 image manifest's digest. Errors: not_found (exit 7) for a missing
  // repository, tag or platform; unavailable (exit 1) when the registry cannot be reached or answers
  // nonsense; unauthenticated (exit 8) when it wants credentials.
  ResolvedImage resolve(const ImageRef& ref);

  // A request to the registry of `ref` (path starts with /v2/), answering its auth challenge once and
  // following redirects. Transport failures throw unavailable; HTTP statuses are returned as they are.
  HttpResult request(const ImageRef& ref, const std::string& method, const std::string& path,
                     const std::map<std::string, std::string>& headers = {}, const std::string& body = {},
                     const std::function<void(std::string_view)>* sink = nullptr);

  // The manifest `digest` of ref's repository, its bytes verified (what resolve reads, by digest).
  std::string manifest(const ImageRef& ref, const std::string& digest);

  // Downloads blob `digest` of ref's repository to `path` (through path + ".part", renamed only once its
  // sha256 and size match). Throws unavailable on a mismatch, not_found when the registry lacks it.
  void fetch_blob(const ImageRef& ref, const std::string& digest, std::int64_t size, const std::string& path);

 private:
  HttpResult fetch_manifest(const ImageRef& ref, const std::string& reference);
  std::string token_for(const ImageRef& ref, const std::string& challenge);

  RegistryOptions options_;
  std::map<std::string, std::string> tokens_;  // registry + repository -> bearer token
};

// "sha256:<hex>" of the bytes.
std::string sha256_digest(const std::string& bytes);

}  // namespace platform::oci
