#pragma once
// Applying one image layer (a tar, plain, gzip or zstd) onto a root filesystem folder, the way OCI
// image-spec "Applying Changesets" describes: entries in order, whiteouts (.wh.NAME) delete what lower
// layers made, an opaque whiteout (.wh..wh..opq) hides a directory's lower content. Every path is
// resolved inside the root (openat2 RESOLVE_IN_ROOT): an entry with "..", a symlink pointing
// anywhere, or a hard link to an outside path can never touch a file outside it.
#include <cstdint>
#include <string>

namespace platform::agent {

struct LayerStats {
  std::int64_t files = 0, directories = 0, symlinks = 0, hardlinks = 0, whiteouts = 0;
  std::int64_t skipped_devices = 0;  // character and block devices: the runtime provides /dev
  std::int64_t bytes = 0;            // file content written
};

// Applies the layer file at `layer_path` onto the folder `root` (which exists). Throws
// PlatformError(invalid_request) naming the entry when the layer is malformed or an entry tries to
// leave the root; the root is then partly written and must be discarded by the caller.
LayerStats apply_layer(const std::string& root, const std::string& layer_path);

}  // namespace platform::agent
