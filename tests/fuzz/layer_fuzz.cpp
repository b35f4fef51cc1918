// Image layers from a hostile registry: any bytes, applied as a layer onto a fresh root. The applier
// may refuse them, but must never crash, and must never touch anything outside the root: a sentinel
// folder beside the root is checked after every input.
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "agent/layer.h"
#include "engine/error.h"

namespace fs = std::filesystem;

namespace {

struct Scratch {
  fs::path base, root, sentinel, layer;
  Scratch() {
    base = fs::temp_directory_path() / ("platform-layer-fuzz-" + std::to_string(::getpid()));
    root = base / "root";
    sentinel = base / "sentinel";
    layer = base / "layer";
    fs::create_directories(sentinel);
    std::ofstream(sentinel / "keep") << "keep";
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(base, ec);
  }
  // Exactly one file with exactly its content, and nothing else beside the root, layer and sentinel.
  bool untouched() const {
    std::error_code ec;
    int n = 0;
    for (const auto& e : fs::directory_iterator(sentinel, ec)) {
      (void)e;
      ++n;
    }
    std::ifstream in(sentinel / "keep");
    std::string s((std::istreambuf_iterator<char>(in)), {});
    int beside = 0;
    for (const auto& e : fs::directory_iterator(base, ec)) {
      (void)e;
      ++beside;
    }
    return n == 1 && s == "keep" && beside <= 3;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Scratch scratch;
  std::error_code ec;
  fs::remove_all(scratch.root, ec);
  fs::create_directories(scratch.root);
  {
    std::ofstream out(scratch.layer, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    platform::agent::apply_layer(scratch.root.string(), scratch.layer.string());
  } catch (const platform::PlatformError&) {
  }
  if (!scratch.untouched()) __builtin_trap();
  return 0;
}
