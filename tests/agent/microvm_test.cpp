// The microvm runtime's core against real QEMU (-M microvm, TCG here) and Debian's cloud kernel
// (scripts/setup unpacks it into build/guest/): an initramfs of an image's rootfs and platform-init
// boots, runs the image's process as PID 1's child, and the test reads its output and exit code.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent/microvm.h"

namespace fs = std::filesystem;
using namespace platform;

class MicroVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists("/usr/bin/qemu-system-x86_64") || !fs::exists(GUEST_KERNEL))
      GTEST_SKIP() << "needs qemu-system-x86 and the guest kernel at " << GUEST_KERNEL << " (scripts/setup)";
    dir_ = fs::temp_directory_path() / ("platform-microvm-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "rootfs/app");
    fs::create_directories(dir_ / "rootfs/srv");
    fs::copy_file(SAMPLE_ECHO_BIN, dir_ / "rootfs/app/echo");  // static: the image holds one file
  }
  void TearDown() override { fs::remove_all(dir_); }

  agent::MicroVmResult boot(const agent::GuestProcess& p) {
    const auto initramfs = (dir_ / "initramfs.cpio").string();
    agent::build_initramfs((dir_ / "rootfs").string(), PLATFORM_INIT_BIN, p, initramfs);
    agent::MicroVmOptions o;
    o.kernel = GUEST_KERNEL;
    o.initramfs = initramfs;
    o.console_path = (dir_ / "console.log").string();
    o.memory_mib = 256;
    o.timeout = std::chrono::seconds(90);
    return agent::run_microvm(o);
  }
  fs::path dir_;
};

TEST_F(MicroVmTest, AnImageProcessBootsThroughPlatformInitAndItsExitCodeComesBack) {
  agent::GuestProcess p;
  p.argv = {"/app/echo"};
  p.env = {{"ECHO_EXIT", "7"}, {"GREETING", "from a microvm"}};
  p.workdir = "/srv";
  p.uid = 65534;
  p.gid = 65534;
  auto r = boot(p);
  ASSERT_FALSE(r.timed_out) << "console:\n" << r.console;
  ASSERT_TRUE(r.exit_code.has_value()) << r.console;
  EXPECT_EQ(*r.exit_code, 7) << r.console;
  EXPECT_NE(r.console.find("echo: exiting with status 7 (ECHO_EXIT)"), std::string::npos) << r.console;
  EXPECT_NE(r.console.find("platform-init: exited with status 7"), std::string::npos) << r.console;
}

TEST_F(MicroVmTest, AProgramThatIsNotThereIsReportedAndTheVmStillEnds) {
  agent::GuestProcess p;
  p.argv = {"/app/missing"};
  auto r = boot(p);
  ASSERT_FALSE(r.timed_out) << r.console;
  ASSERT_TRUE(r.exit_code.has_value()) << r.console;
  EXPECT_EQ(*r.exit_code, 127);
  EXPECT_NE(r.console.find("cannot run /app/missing"), std::string::npos) << r.console;
}
