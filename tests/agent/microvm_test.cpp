// The microvm runtime against real QEMU (-M microvm, TCG here) and Debian's cloud kernel (scripts/setup
// unpacks it and its virtio modules into build/guest/): an image's process boots through platform-init;
// its stdout and stderr, exit code, OOM kill, secrets file, health probes over the VM's own network,
// exec commands over the control line, stop with a grace period, and adoption by a restarted agent.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/health.h"
#include "agent/microvm_runtime.h"
#include "engine/error.h"

namespace fs = std::filesystem;
using namespace platform;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

agent::GuestKit kit() {
  agent::GuestKit k;
  k.kernel = GUEST_KERNEL;
  k.init = PLATFORM_INIT_BIN;
  k.modules_dir = GUEST_MODULES;
  return k;
}

fs::path scratch(const std::string& kind) {
  auto d = fs::temp_directory_path() / ("platform-" + kind + "-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(d);
  return d;
}

// An image of one static binary (the sample), a user and a group.
void make_image(const fs::path& rootfs) {
  fs::create_directories(rootfs / "app");
  fs::create_directories(rootfs / "srv");
  fs::create_directories(rootfs / "etc");
  fs::copy_file(SAMPLE_ECHO_BIN, rootfs / "app/echo");
  std::ofstream(rootfs / "etc/passwd") << "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/srv:/bin/sh\n";
  std::ofstream(rootfs / "etc/group") << "root:x:0:\napp:x:1000:\n";
}

}  // namespace

// The core: an initramfs and QEMU in the foreground, the process's output on the console.
class MicroVmBootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists("/usr/bin/qemu-system-x86_64") || !kit().missing().empty())
      GTEST_SKIP() << "needs qemu-system-x86 and the guest kit (scripts/setup): " << kit().missing();
    dir_ = scratch("microvm");
    make_image(dir_ / "rootfs");
  }
  void TearDown() override { fs::remove_all(dir_); }

  agent::MicroVmResult boot(const agent::ProcessSpec& p) {
    agent::GuestBoot b;
    b.process = p;
    const auto initramfs = (dir_ / "initramfs.cpio").string();
    agent::build_initramfs((dir_ / "rootfs").string(), PLATFORM_INIT_BIN, b, initramfs);
    agent::MicroVmOptions o;
    o.kernel = GUEST_KERNEL;
    o.initramfs = initramfs;
    o.console_path = (dir_ / "console.log").string();
    o.memory_mib = 256;
    return agent::run_microvm(o, seconds(90));
  }
  fs::path dir_;
};

TEST_F(MicroVmBootTest, AnImageProcessBootsThroughPlatformInitAndItsExitCodeComesBack) {
  agent::ProcessSpec p;
  p.argv = {"/app/echo"};
  p.env = {{"ECHO_EXIT", "7"}, {"GREETING", "from a microvm"}};
  p.workdir = "/srv";
  p.uid = 65534;
  p.gid = 65534;
  auto r = boot(p);
  ASSERT_FALSE(r.timed_out) << "console:\n" << r.console;
  ASSERT_TRUE(r.exit.has_value()) << r.console;
  EXPECT_EQ(r.exit->exit_code, 7) << r.console;
  EXPECT_NE(r.console.find("echo: exiting with status 7 (ECHO_EXIT)"), std::string::npos) << r.console;
  EXPECT_NE(r.console.find("platform-init: exited with status 7"), std::string::npos) << r.console;
}

TEST_F(MicroVmBootTest, AProgramThatIsNotThereIsReportedAndTheVmStillEnds) {
  agent::ProcessSpec p;
  p.argv = {"/app/missing"};
  auto r = boot(p);
  ASSERT_FALSE(r.timed_out) << r.console;
  ASSERT_TRUE(r.exit.has_value()) << r.console;
  EXPECT_EQ(r.exit->exit_code, 127);
  EXPECT_NE(r.console.find("cannot run /app/missing"), std::string::npos) << r.console;
}

TEST(MicroVmVerdict, TheConsolesLastVerdictSaysHowTheProcessEnded) {
  EXPECT_FALSE(agent::parse_verdict("[    0.1] booting\n").has_value());
  auto e = agent::parse_verdict("platform-init: started /app/echo\nplatform-init: exited with status 3\n");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->exit_code, 3);
  auto k = agent::parse_verdict("platform-init: killed by signal 9 (out of memory)\r\n");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->signal, 9);
  EXPECT_TRUE(k->oom);
  EXPECT_EQ(k->describe(), "killed for running out of memory (OOM)");
}

TEST(MicroVmKit, AKitWithoutAModuleEveryVmNeedsSaysWhichAndWhatToRun) {
  const auto dir = fs::temp_directory_path() / ("platform-kit-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream order(dir / "load-order");
  for (const char* m : {"virtio_ring.ko", "virtio.ko", "virtio_mmio.ko", "virtio_net.ko"}) {
    std::ofstream(dir / m) << "module";
    order << m << "\n";
  }
  order.close();
  agent::GuestKit kit{"/bin/true", "/bin/true", dir.string()};
  EXPECT_NE(kit.missing().find("has no virtio_console.ko (run scripts/setup again"), std::string::npos) << kit.missing();
  std::ofstream(dir / "virtio_console.ko") << "module";
  std::ofstream(dir / "load-order", std::ios::app) << "virtio_console.ko\n";
  EXPECT_EQ(kit.missing(), "");
  fs::remove_all(dir);
}

TEST(MicroVmMac, EachRunHasItsOwnLocallyAdministeredAddress) {
  const auto a = agent::mac_for("ins_1-r0"), b = agent::mac_for("ins_1-r1");
  EXPECT_EQ(a.size(), 17u);
  EXPECT_EQ(a.substr(0, 3), "02:");
  EXPECT_NE(a, b);
  EXPECT_EQ(a, agent::mac_for("ins_1-r0"));
}

// The runtime: detached VMs with their own network namespace, as the agent runs them.
class MicroVmRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.guest = kit();
    bool ok = false;
    auto why = agent::MicroVmRuntime::probe(options_, &ok);
    if (!ok) GTEST_SKIP() << "no microVMs here: " << why;  // scripts/setup installs QEMU and the kit; tests run as root
    base_ = scratch("microvm-runtime");
    make_image(base_ / "image");
    options_.state_dir = (base_ / "state").string();
    options_.shim = PLATFORM_AGENT_BIN;
    runtime_ = std::make_unique<agent::MicroVmRuntime>(options_);
  }
  void TearDown() override {
    if (!runtime_) return;
    for (const auto& id : started_) {
      try {
        runtime_->stop(id, milliseconds(100));
      } catch (const std::exception&) {
      }
      runtime_->destroy(id);
    }
    fs::remove_all(base_);
  }
  agent::InstanceSpec spec(const std::string& id) {
    started_.push_back(id);
    agent::InstanceSpec s;
    s.id = id;
    s.rootfs = (base_ / "image").string();
    s.image_config = {{"Entrypoint", {"/app/echo"}}, {"Env", {"GREETING=from-image", "PORT=8080"}},
                      {"WorkingDir", "/srv"}, {"User", "app"}};
    s.memory_mib = 64;
    return s;
  }
  // Waits (bounded: a TCG boot takes a few seconds) until the file holds `text`.
  static bool eventually_contains(const fs::path& p, const std::string& text) {
    for (int i = 0; i < 1200; ++i) {
      if (slurp(p).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(milliseconds(50));
    }
    return false;
  }
  std::string diagnostics(const std::string& id) {
    return "console:\n" + slurp(runtime_->console_path(id)) + "\nstderr:\n" + slurp(runtime_->stderr_path(id)) +
           "\nqemu:\n" + slurp(base_ / "state/instances" / id / "qemu.log");
  }

  agent::MicroVmRuntime::Options options_;
  fs::path base_;
  std::unique_ptr<agent::MicroVmRuntime> runtime_;
  std::vector<std::string> started_;
};

TEST_F(MicroVmRuntimeTest, AServingInstanceIsProbedOverItsNetworkExecdIntoAndStoppedWithSigterm) {
  auto s = spec("web");
  s.secrets_file = (base_ / "secrets").string();
  std::ofstream(s.secrets_file) << "platform-secrets 1\nAPI_KEY 3\nabc\n";
  runtime_->start(s);
  ASSERT_TRUE(eventually_contains(runtime_->stdout_path("web"), "listening on port 8080")) << diagnostics("web");
  EXPECT_EQ(slurp(runtime_->stdout_path("web")).find("\r"), std::string::npos) << "the serial port adds no CRs";
  // Health probes reach the guest's address inside the VM's network namespace.
  auto target = runtime_->probe_target("web");
  ASSERT_TRUE(target);
  manifest::HealthCheck c;
  c.type = "http";
  c.port = 8080;
  c.path = "/healthz";
  c.timeout_ms = 5000;
  auto probed = agent::probe(c, *target);
  EXPECT_TRUE(probed.ok) << probed.error << "\n" << diagnostics("web");
  c.type = "tcp";
  c.port = 9999;
  EXPECT_FALSE(agent::probe(c, *target).ok);
  // exec commands run inside, as the image's user in its workdir, with the instance's env and the secrets.
  auto ok = runtime_->exec("web", {"/app/echo"}, {{"ECHO_EXIT", "0"}}, seconds(20));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  auto failed = runtime_->exec("web", {"/app/echo"}, {{"ECHO_EXIT", "4"}}, seconds(20));
  EXPECT_EQ(failed.exit_code, 4);
  EXPECT_NE(failed.output.find("exiting with status 4"), std::string::npos) << failed.output;
  auto missing = runtime_->exec("web", {"/app/nope"}, {}, seconds(20));
  EXPECT_EQ(missing.exit_code, 127);
  EXPECT_NE(missing.output.find("cannot run /app/nope"), std::string::npos) << missing.output;
  auto slow = runtime_->exec("web", {"/app/echo"}, {{"PORT", "8081"}}, milliseconds(1500));
  EXPECT_TRUE(slow.timed_out) << slow.output;
  c.port = 8081;
  EXPECT_FALSE(agent::probe(c, *target).ok) << "the timed-out command is killed too";
  // The guest's view: user, workdir, env and a read-only secrets file (the sample prints what it sees).
  auto seen = runtime_->exec("web", {"/app/echo"}, {{"ECHO_SHOW", "1"}}, seconds(20));
  EXPECT_EQ(seen.exit_code, 0) << seen.output;
  EXPECT_NE(seen.output.find("uid=1000 gid=1000 cwd=/srv greeting=from-image instance=web"), std::string::npos)
      << seen.output;
  EXPECT_NE(seen.output.find("secrets=platform-secrets 1|API_KEY 3|abc| writable=no"), std::string::npos) << seen.output;
  // Many commands at once on the one line: a long one (it serves until its timeout) holds up neither
  // a quick one nor a stop's signal.
  agent::ExecResult long_one;
  std::thread beside([&] { long_one = runtime_->exec("web", {"/app/echo"}, {{"PORT", "8082"}}, milliseconds(4000)); });
  std::this_thread::sleep_for(milliseconds(500));
  const auto quick_at = std::chrono::steady_clock::now();
  auto quick = runtime_->exec("web", {"/app/echo"}, {{"ECHO_EXIT", "6"}}, seconds(20));
  const auto quick_took = std::chrono::steady_clock::now() - quick_at;
  EXPECT_EQ(quick.exit_code, 6) << quick.output;
  EXPECT_LT(quick_took, milliseconds(3000)) << "the quick command waited for the long one";
  beside.join();
  EXPECT_TRUE(long_one.timed_out) << long_one.output;
  // stdin in, output out (up to the caller's limit), byte for byte over the virtio port.
  std::string input(256 * 1024, '\0');
  for (std::size_t i = 0; i < input.size(); ++i) input[i] = static_cast<char>((i * 2654435761u) >> 13);
  const auto cat_at = std::chrono::steady_clock::now();
  auto cat = runtime_->exec("web", {"/app/echo"}, {{"ECHO_CAT", "1"}}, seconds(60), 1 << 20, input);
  const auto cat_ms = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - cat_at).count();
  EXPECT_EQ(cat.exit_code, 0) << cat.output.substr(0, 200);
  EXPECT_EQ(cat.output.substr(0, input.size()), input);
  EXPECT_NE(cat.output.find("echo: 262144 bytes from stdin"), std::string::npos);
  std::printf("256 KiB through exec in a microVM, each way: %lld ms\n", static_cast<long long>(cat_ms));
  auto capped = runtime_->exec("web", {"/app/echo"}, {{"ECHO_CAT", "1"}}, seconds(60), 1000, input);
  EXPECT_EQ(capped.output.size(), 1000u);
  EXPECT_TRUE(capped.truncated);
  // SIGTERM reaches the process through platform-init: the sample exits 0.
  auto st = runtime_->stop("web", seconds(20));
  EXPECT_EQ(st.exit_code, 0) << st.describe() << "\n" << diagnostics("web");
  EXPECT_FALSE(runtime_->probe_target("web"));
}

TEST_F(MicroVmRuntimeTest, ExitCodeStderrAndAnOomKillAreReported) {
  auto crash = spec("crash");
  crash.env["ECHO_EXIT"] = "3";
  auto hungry = spec("hungry");
  hungry.memory_mib = 32;
  hungry.env["ECHO_ALLOC_MIB"] = "256";
  runtime_->start(crash);
  runtime_->start(hungry);
  auto c = runtime_->wait("crash", seconds(90));
  ASSERT_TRUE(c) << diagnostics("crash");
  EXPECT_EQ(c->exit_code, 3);
  const auto err = slurp(runtime_->stderr_path("crash"));
  EXPECT_EQ(err, "echo: exiting with status 3 (ECHO_EXIT)\n") << "each line once, nothing added";
  EXPECT_EQ(slurp(runtime_->stdout_path("crash")).find("exiting"), std::string::npos) << "stderr and stdout apart";
  auto h = runtime_->wait("hungry", seconds(90));
  ASSERT_TRUE(h) << diagnostics("hungry");
  EXPECT_TRUE(h->oom) << h->describe() << "\n" << diagnostics("hungry");
  EXPECT_EQ(h->signal, 9);
}

TEST_F(MicroVmRuntimeTest, ARestartedAgentAdoptsTheVmAndStopKillsAfterTheGracePeriod) {
  auto s = spec("stubborn");
  s.env["ECHO_IGNORE_TERM"] = "1";
  runtime_->start(s);
  ASSERT_TRUE(eventually_contains(runtime_->stdout_path("stubborn"), "listening on port")) << diagnostics("stubborn");
  EXPECT_EQ(runtime_->exec("stubborn", {"/app/echo"}, {{"ECHO_EXIT", "2"}}, seconds(20)).exit_code, 2);
  // The agent goes away (its runtime with it, and its connection to the control line); the VM and its
  // shim keep running.
  runtime_ = std::make_unique<agent::MicroVmRuntime>(options_);
  EXPECT_EQ(runtime_->present(), std::vector<std::string>{"stubborn"});
  EXPECT_FALSE(runtime_->wait("stubborn", milliseconds(50)));
  // The new agent dials the line afresh, and the guest answers it.
  auto again = runtime_->exec("stubborn", {"/app/echo"}, {{"ECHO_EXIT", "3"}}, seconds(20));
  EXPECT_EQ(again.exit_code, 3) << again.output;
  const auto t = std::chrono::steady_clock::now();
  auto st = runtime_->stop("stubborn", milliseconds(1000));
  EXPECT_GE(std::chrono::steady_clock::now() - t, milliseconds(1000));
  EXPECT_EQ(st.signal, 9) << st.describe();
  EXPECT_FALSE(st.oom);
  EXPECT_THROW(runtime_->start(spec("stubborn")), PlatformError);  // an id is never started twice
}
