#pragma once
// Pushing small images to a real registry through the distribution API (blob upload, manifest PUT), so
// tests can build exactly the manifests, indexes and manifest lists they need.
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/json.h"
#include "engine/oci/registry.h"

namespace platform::harness {

inline std::string push_blob(oci::RegistryClient& c, const oci::ImageRef& repo, const std::string& bytes) {
  const auto digest = oci::sha256_digest(bytes);
  auto start = c.request(repo, "POST", "/v2/" + repo.repository + "/blobs/uploads/");
  if (start.status != 202) throw std::runtime_error("blob upload start: HTTP " + std::to_string(start.status));
  auto location = start.headers["location"];
  if (auto scheme = location.find("://"); scheme != std::string::npos)
    location = location.substr(location.find('/', scheme + 3));
  location += (location.find('?') == std::string::npos ? "?" : "&") + std::string("digest=") +
              digest.substr(0, 6) + "%3A" + digest.substr(7);
  auto done = c.request(repo, "PUT", location, {{"Content-Type", "application/octet-stream"}}, bytes);
  if (done.status != 201) throw std::runtime_error("blob upload: HTTP " + std::to_string(done.status) + " " + done.body);
  return digest;
}

inline std::string push_manifest(oci::RegistryClient& c, const oci::ImageRef& repo, const std::string& reference,
                                 const std::string& media_type, const std::string& body) {
  auto r = c.request(repo, "PUT", "/v2/" + repo.repository + "/manifests/" + reference,
                     {{"Content-Type", media_type}}, body);
  if (r.status != 201) throw std::runtime_error("manifest PUT: HTTP " + std::to_string(r.status) + " " + r.body);
  return oci::sha256_digest(body);
}

// A one-layer image for os/arch (the layer's bytes need not be a tar for the registry); returns the
// manifest's body. `docker` chooses Docker v2 schema 2 media types over OCI ones.
inline std::string push_image(oci::RegistryClient& c, const oci::ImageRef& repo, const std::string& arch,
                              const std::string& layer, bool docker = false) {
  auto config = Json{{"architecture", arch},
                     {"os", "linux"},
                     {"config", {{"Env", {"PATH=/bin"}}}},
                     {"rootfs", {{"type", "layers"}, {"diff_ids", {oci::sha256_digest(layer)}}}}}
                    .dump();
  auto config_digest = push_blob(c, repo, config);
  auto layer_digest = push_blob(c, repo, layer);
  Json m = {{"schemaVersion", 2},
            {"mediaType", docker ? oci::kDockerManifest : oci::kOciManifest},
            {"config",
             {{"mediaType", docker ? "application/vnd.docker.container.image.v1+json"
                                   : "application/vnd.oci.image.config.v1+json"},
              {"digest", config_digest},
              {"size", config.size()}}},
            {"layers",
             {{{"mediaType", docker ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
                                    : "application/vnd.oci.image.layer.v1.tar+gzip"},
               {"digest", layer_digest},
               {"size", layer.size()}}}}};
  return m.dump();
}

}  // namespace platform::harness
