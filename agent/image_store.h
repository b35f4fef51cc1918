#pragma once
// The agent's image cache: images pulled from their registry by digest, every blob verified, layers
// applied into a root filesystem once per image and kept until garbage-collected.
//
//   <root>/blobs/sha256/<hex>             verified blobs (config and compressed layers)
//   <root>/images/<hex>/manifest.json     the image manifest (linux/amd64) the digest names
//   <root>/images/<hex>/config.json       the image config (entrypoint, cmd, env, workdir, user)
//   <root>/images/<hex>/rootfs/           the layers applied in order
//
// An image folder appears by one rename once complete, so a crash mid-pull leaves only a
// `.tmp-*` folder, which the next pull or gc removes.
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "engine/json.h"
#include "engine/oci/image_ref.h"
#include "engine/oci/registry.h"

namespace platform::agent {

struct Image {
  std::string digest;  // the image manifest's
  std::string dir;     // <root>/images/<hex>
  std::string rootfs;  // dir + "/rootfs"
  Json config;         // the image config's "config" object: Entrypoint, Cmd, Env, WorkingDir, User ...
  bool cached = false; // true when no download was needed
  std::int64_t downloaded_bytes = 0;
};

struct GcResult {
  int images_removed = 0, blobs_removed = 0;
  std::int64_t bytes_freed = 0;
};

class ImageStore {
 public:
  explicit ImageStore(std::string root, oci::RegistryOptions options = {});

  // The image `ref` names (a tag is resolved; an index narrowed to linux/amd64), from the cache when it
  // is there. Errors as RegistryClient, plus invalid_request for a malformed or hostile image.
  Image pull(const oci::ImageRef& ref);
  std::optional<Image> cached(const std::string& digest) const;

  // Removes every image whose digest is not in `keep` (and not being pulled), then every blob no kept
  // image uses, and leftovers of interrupted pulls.
  GcResult gc(const std::set<std::string>& keep);

  const std::string& root() const { return root_; }

 private:
  std::string blob_path(const std::string& digest) const;
  std::string image_dir(const std::string& digest) const;
  std::shared_ptr<std::mutex> lock_for(const std::string& digest);

  std::string root_;
  oci::RegistryOptions options_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<std::mutex>> pulling_;
};

}  // namespace platform::agent
