#include "agent/image_store.h"

#include <fmt/format.h>

#include <filesystem>

#include "agent/files.h"
#include "agent/layer.h"
#include "engine/crypto.h"
#include "engine/error.h"

namespace platform::agent {
namespace fs = std::filesystem;

namespace {

const std::set<std::string> kLayerTypes = {
    "application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar"};

std::string hex_of(const std::string& digest) { return digest.substr(7); }

[[noreturn]] void malformed(const oci::ImageRef& ref, const std::string& why) {
  throw PlatformError(ErrorCode::invalid_request, "the image " + ref.str() + " is malformed: " + why,
                      "Rebuild and push it with a standard tool (docker build, buildah, umoci).");
}

}  // namespace

ImageStore::ImageStore(std::string root, oci::RegistryOptions options)
    : root_(std::move(root)), options_(std::move(options)) {
  fs::create_directories(fs::path(root_) / "blobs" / "sha256");
  fs::create_directories(fs::path(root_) / "images");
}

std::string ImageStore::blob_path(const std::string& digest) const {
  return (fs::path(root_) / "blobs" / "sha256" / hex_of(digest)).string();
}

std::string ImageStore::image_dir(const std::string& digest) const {
  return (fs::path(root_) / "images" / hex_of(digest)).string();
}

std::shared_ptr<std::mutex> ImageStore::lock_for(const std::string& digest) {
  std::lock_guard lock(mu_);
  auto& m = pulling_[digest];
  if (!m) m = std::make_shared<std::mutex>();
  return m;
}

std::optional<Image> ImageStore::cached(const std::string& digest) const {
  if (!oci::valid_digest(digest)) return std::nullopt;
  const fs::path dir = image_dir(digest);
  if (!fs::exists(dir / "rootfs") || !fs::exists(dir / "config.json")) return std::nullopt;
  Image img;
  img.digest = digest;
  img.dir = dir.string();
  img.rootfs = (dir / "rootfs").string();
  img.config = Json::parse(read_text(dir / "config.json"), nullptr, false).value("config", Json::object());
  img.cached = true;
  return img;
}

Image ImageStore::pull(const oci::ImageRef& ref) {
  oci::RegistryClient registry(options_);
  // A digest that names an image manifest is used as it is; a tag (or an index digest) is resolved.
  std::string digest = ref.digest;
  if (digest.empty() || !cached(digest)) digest = registry.resolve(ref).digest;
  if (auto hit = cached(digest)) return *hit;

  auto guard = lock_for(digest);
  std::lock_guard pull_lock(*guard);
  if (auto hit = cached(digest)) return *hit;  // another pull finished it meanwhile

  const auto manifest_bytes = registry.manifest(ref, digest);
  Json manifest = Json::parse(manifest_bytes, nullptr, false);
  if (!manifest.is_object() || !manifest.contains("config") || !manifest["config"].is_object())
    malformed(ref, "its manifest has no config");
  std::int64_t downloaded = 0;
  auto fetch = [&](const Json& d) {
    const auto bd = d.value("digest", std::string());
    const auto size = d.value("size", std::int64_t{-1});
    if (!oci::valid_digest(bd)) malformed(ref, "a descriptor has no valid sha256 digest");
    if (d.contains("urls")) malformed(ref, "a layer lives outside the registry (foreign layers are not supported)");
    if (!fs::exists(blob_path(bd))) {
      registry.fetch_blob(ref, bd, size, blob_path(bd));
      downloaded += size;
    }
    return blob_path(bd);
  };
  const auto config_bytes = read_text(fetch(manifest["config"]));
  Json config = Json::parse(config_bytes, nullptr, false);
  if (!config.is_object()) malformed(ref, "its config is not JSON");
  if (config.value("os", "linux") != "linux") malformed(ref, "its config is for " + config.value("os", "") + ", not linux");

  // Apply the layers into a temporary folder, then publish it with one rename.
  const fs::path tmp = fs::path(root_) / "images" / (".tmp-" + hex_of(digest).substr(0, 16) + "-" + random_secret(4));
  fs::create_directories(tmp / "rootfs");
  fs::permissions(tmp / "rootfs", fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                      fs::perms::others_read | fs::perms::others_exec);
  try {
    for (const auto& layer : manifest.value("layers", Json::array())) {
      if (!layer.is_object()) malformed(ref, "a layer descriptor is not an object");
      const auto type = layer.value("mediaType", std::string());
      if (!kLayerTypes.count(type)) malformed(ref, "a layer has media type \"" + type + "\", which v1 cannot apply");
      apply_layer((tmp / "rootfs").string(), fetch(layer));
    }
    write_atomically(tmp / "manifest.json", manifest_bytes);
    write_atomically(tmp / "config.json", config_bytes);
    std::error_code ec;
    fs::rename(tmp, image_dir(digest), ec);
    if (ec) throw PlatformError(ErrorCode::internal, "cannot publish image " + digest + ": " + ec.message(), "");
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  auto img = *cached(digest);
  img.cached = false;
  img.downloaded_bytes = downloaded;
  return img;
}

GcResult ImageStore::gc(const std::set<std::string>& keep) {
  GcResult out;
  std::set<std::string> used;  // blob hexes the kept images reference
  auto size_of = [](const fs::path& p) {
    std::int64_t n = 0;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec))
      if (!ec && it->is_regular_file(ec) && !it->is_symlink(ec)) n += static_cast<std::int64_t>(it->file_size(ec));
    return n;
  };
  for (const auto& entry : fs::directory_iterator(fs::path(root_) / "images")) {
    const auto name = entry.path().filename().string();
    const auto digest = "sha256:" + name;
    bool busy = false;
    {
      std::lock_guard lock(mu_);
      auto it = pulling_.find(digest);
      busy = it != pulling_.end() && it->second.use_count() > 1;
    }
    const bool leftover = name.rfind(".tmp-", 0) == 0;
    if (busy || (!leftover && keep.count(digest))) {
      if (!leftover) {
        Json m = Json::parse(read_text(entry.path() / "manifest.json"), nullptr, false);
        if (m.is_object() && m.contains("config") && m["config"].is_object())
          used.insert(hex_of(m["config"].value("digest", "sha256:")));
        if (m.is_object())
          for (const auto& l : m.value("layers", Json::array()))
            if (l.is_object()) used.insert(hex_of(l.value("digest", "sha256:")));
      }
      continue;
    }
    if (leftover) {
      // An interrupted pull of an image being pulled right now is not a leftover.
      std::lock_guard lock(mu_);
      bool active = false;
      for (const auto& [d, m] : pulling_)
        if (m.use_count() > 1 && name.find(hex_of(d).substr(0, 16)) != std::string::npos) active = true;
      if (active) continue;
    }
    out.bytes_freed += size_of(entry.path());
    fs::remove_all(entry.path());
    if (!leftover) ++out.images_removed;
  }
  for (const auto& entry : fs::directory_iterator(fs::path(root_) / "blobs" / "sha256")) {
    const auto name = entry.path().filename().string();
    if (used.count(name)) continue;
    std::error_code ec;
    out.bytes_freed += static_cast<std::int64_t>(entry.file_size(ec));
    fs::remove(entry.path(), ec);
    if (name.find(".part") == std::string::npos) ++out.blobs_removed;
  }
  return out;
}

}  // namespace platform::agent
