// What an instance runs, resolved from its image's config and release: both runtimes start exactly this.
#include "agent/process_spec.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent/runtime.h"
#include "engine/error.h"

namespace platform {
namespace {
namespace fs = std::filesystem;

class ProcessSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("platform-process-spec-" + std::to_string(::getpid()));
    fs::create_directories(root_ / "etc");
    std::ofstream(root_ / "etc/passwd") << "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/srv:/bin/sh\n";
    std::ofstream(root_ / "etc/group") << "root:x:0:\nstaff:x:50:\napp:x:1001:\n";
  }
  void TearDown() override { fs::remove_all(root_); }
  agent::InstanceSpec spec(Json config) {
    agent::InstanceSpec s;
    s.id = "i1-r0";
    s.rootfs = root_.string();
    s.image_config = std::move(config);
    return s;
  }
  fs::path root_;
};

TEST_F(ProcessSpecTest, TheImagesEntrypointCmdEnvAndWorkdirWithTheReleasesConfigOverIt) {
  auto s = spec({{"Entrypoint", {"/bin/app"}}, {"Cmd", {"--serve"}}, {"Env", {"A=image", "B=image", "PATH=/opt/bin"}},
                 {"WorkingDir", "/srv"}});
  s.env = {{"B", "release"}};
  auto p = agent::resolve_process(s);
  EXPECT_EQ(p.argv, (std::vector<std::string>{"/bin/app", "--serve"}));
  EXPECT_EQ(p.env["A"], "image");
  EXPECT_EQ(p.env["B"], "release");
  EXPECT_EQ(p.env["PATH"], "/opt/bin");
  EXPECT_EQ(p.env["PLATFORM_INSTANCE_ID"], "i1-r0");
  EXPECT_EQ(p.workdir, "/srv");
  EXPECT_EQ(p.uid, 0u);
  s.command = {"/bin/other"};  // the manifest's command replaces both
  EXPECT_EQ(agent::resolve_process(s).argv, std::vector<std::string>{"/bin/other"});
  s.image_config = Json::object();
  EXPECT_EQ(agent::resolve_process(s).workdir, "/");
}

TEST_F(ProcessSpecTest, AUserGetsItsPrimaryGroupUnlessOneIsNamed) {
  auto p = agent::resolve_process(spec({{"Cmd", {"x"}}, {"User", "app"}}));
  EXPECT_EQ(p.uid, 1000u);
  EXPECT_EQ(p.gid, 1001u);
  p = agent::resolve_process(spec({{"Cmd", {"x"}}, {"User", "1000"}}));
  EXPECT_EQ(p.gid, 1001u) << "a numeric uid in /etc/passwd has its primary group too";
  p = agent::resolve_process(spec({{"Cmd", {"x"}}, {"User", "app:staff"}}));
  EXPECT_EQ(p.gid, 50u);
  p = agent::resolve_process(spec({{"Cmd", {"x"}}, {"User", "4242:4343"}}));
  EXPECT_EQ(p.uid, 4242u);
  EXPECT_EQ(p.gid, 4343u);
}

TEST_F(ProcessSpecTest, NothingToRunOrAnUnknownUserIsAClearError) {
  EXPECT_THROW(agent::resolve_process(spec(Json::object())), PlatformError);
  try {
    agent::resolve_process(spec({{"Cmd", {"x"}}, {"User", "nobody-here"}}));
    ADD_FAILURE() << "resolved";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.error().message, "the image's user \"nobody-here\" is not in its /etc/passwd");
  }
  EXPECT_THROW(agent::resolve_process(spec({{"Cmd", {"x"}}, {"User", "app:nogroup"}})), PlatformError);
}

}  // namespace
}  // namespace platform
