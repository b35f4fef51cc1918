// Converging a host on its assignment set: images no instance on the host uses any more leave the
// image cache; the ones an assigned instance names stay (docs/agent.md#assignments).
#include "agent/converge.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent/sandbox.h"

namespace platform {
namespace {
namespace fs = std::filesystem;

const std::string kUsed = "sha256:" + std::string(64, 'a');
const std::string kUnused = "sha256:" + std::string(64, 'b');

// An image as the cache lays it out (docs/agent.md#image-cache).
void cache_image(const fs::path& store, const std::string& digest) {
  const auto dir = store / "images" / digest.substr(7);
  fs::create_directories(dir / "rootfs/app");
  std::ofstream(dir / "manifest.json") << R"({"config": {"digest": "sha256:)" << std::string(64, 'c') << R"("}, "layers": []})";
  std::ofstream(dir / "config.json") << R"({"config": {"Cmd": ["/app/echo"]}})";
}

TEST(Converge, ImagesNoInstanceUsesLeaveTheCacheAndAssignedOnesStay) {
  const auto root = fs::temp_directory_path() / ("platform-converge-" + std::to_string(::getpid()));
  fs::remove_all(root);
  agent::ImageStore images((root / "images").string());
  cache_image(root / "images", kUsed);
  cache_image(root / "images", kUnused);
  ASSERT_TRUE(images.cached(kUsed));
  ASSERT_TRUE(images.cached(kUnused));
  agent::Outbox outbox((root / "outbox").string());
  agent::Sandbox runtime((root / "sandbox").string(), "/bin/false");  // nothing runs: the instance is to stop
  agent::SupervisorDeps deps;
  deps.images = &images;
  deps.runtime = &runtime;
  deps.outbox = &outbox;
  deps.secrets_dir = (root / "secrets").string();
  {
    agent::Converger converger(deps, std::chrono::milliseconds(0));
    const Json set = {{"version", 1},
                      {"instances",
                       {{{"id", "inst_1"},
                         {"name", "web-1"},
                         {"image", {{"registry", "127.0.0.1:1"}, {"repository", "sample/echo"}, {"digest", kUsed}}},
                         {"process", "web"},
                         {"process_spec", Json::object()},
                         {"cpu", 0.1},
                         {"memory_mib", 64},
                         {"desired", "stop"},
                         {"desired_reason", "scaled web to 0"}}}}};
    converger.apply(set);
    EXPECT_TRUE(images.cached(kUsed)) << "an assigned instance's image stays";
    EXPECT_FALSE(images.cached(kUnused)) << "an image nothing here uses goes";
    converger.apply({{"version", 2}, {"instances", Json::array()}});
    EXPECT_FALSE(images.cached(kUsed)) << "once nothing is assigned, its image goes too";
  }
  fs::remove_all(root);
}

}  // namespace
}  // namespace platform
