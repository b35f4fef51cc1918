#include "engine/version.h"

#include <gtest/gtest.h>

#include <regex>

using namespace platform;

// The build's version is CMakeLists.txt's project version (passed to this test apart from the generated
// header), and its commit is the checkout's: twelve hex digits, "-dirty" with uncommitted changes, or
// "unknown" outside a git checkout.
TEST(Version, IsTheProjectVersionAndTheCommit) {
  EXPECT_EQ(build_info().version, PLATFORM_PROJECT_VERSION);
  EXPECT_TRUE(std::regex_match(build_info().commit, std::regex("[0-9a-f]{12}(-dirty)?|unknown"))) << build_info().commit;
  EXPECT_EQ(version_line(), build_info().version + " (commit " + build_info().commit + ")");
  EXPECT_EQ(user_agent("platform-cli"), "platform-cli/" + build_info().version + " (" + build_info().commit + ")");
}

TEST(Version, ReleaseLineIsTheFirstTwoNumbers) {
  EXPECT_EQ(release_line("0.1.0"), "0.1");
  EXPECT_EQ(release_line("1.12.3-rc1"), "1.12");
  EXPECT_EQ(release_line("2.0"), "2.0");
  EXPECT_EQ(release_line("3"), "3");
  EXPECT_NE(release_line("0.1.9"), release_line("0.2.0"));
}
