// The sandbox runtime against real runc: the image's entrypoint, env, workdir and user; the release's
// config; the secrets file read-only; exit codes; OOM kills; stop with a grace period, then SIGKILL.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/health.h"
#include "agent/sandbox.h"
#include "engine/error.h"

namespace platform {
namespace {
namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class SandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bool ok = false;
    auto why = agent::Sandbox::probe("/usr/sbin/runc", &ok);
    if (!ok) GTEST_SKIP() << "no sandbox here: " << why;  // scripts/setup installs runc; tests run as root
    base_ = fs::temp_directory_path() / ("platform-sandbox-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(base_);
    rootfs_ = base_ / "image";
    fs::create_directories(rootfs_ / "app");
    fs::create_directories(rootfs_ / "etc");
    fs::create_directories(rootfs_ / "srv");
    fs::copy_file(SAMPLE_ECHO_BIN, rootfs_ / "app/echo");
    std::ofstream(rootfs_ / "etc/passwd") << "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/srv:/bin/sh\n";
    std::ofstream(rootfs_ / "etc/group") << "root:x:0:\napp:x:1000:\n";
    sandbox_ = std::make_unique<agent::Sandbox>((base_ / "state").string(), PLATFORM_AGENT_BIN);
  }
  void TearDown() override {
    if (!sandbox_) return;
    for (const auto& id : started_) {
      try {
        sandbox_->stop(id, std::chrono::milliseconds(100));
      } catch (const std::exception&) {
      }
      sandbox_->destroy(id);
    }
    fs::remove_all(base_);
  }
  agent::InstanceSpec spec(const std::string& id) {
    started_.push_back(id);
    agent::InstanceSpec s;
    s.id = id;
    s.rootfs = rootfs_.string();
    s.image_config = {{"Entrypoint", {"/app/echo"}}, {"Env", {"GREETING=from-image", "PORT=8080"}},
                      {"WorkingDir", "/srv"}, {"User", "app"}};
    s.memory_mib = 64;
    return s;
  }
  // Waits (bounded) until the file holds `text`.
  static bool eventually_contains(const fs::path& p, const std::string& text) {
    for (int i = 0; i < 200; ++i) {
      if (slurp(p).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return false;
  }

  fs::path base_, rootfs_;
  std::unique_ptr<agent::Sandbox> sandbox_;
  std::vector<std::string> started_;
};

TEST_F(SandboxTest, TheExitCodeAndOutputOfAFailingProcessAreKept) {
  auto s = spec("crash");
  s.env["ECHO_EXIT"] = "3";
  sandbox_->start(s);
  auto st = sandbox_->wait("crash", std::chrono::seconds(20));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->exit_code, 3);
  EXPECT_FALSE(st->oom);
  EXPECT_EQ(st->describe(), "exited with status 3");
  EXPECT_NE(slurp(sandbox_->stderr_path("crash")).find("exiting with status 3"), std::string::npos);
}

TEST_F(SandboxTest, TheImageConfigReleaseEnvUserAndSecretsFileAreHonoured) {
  const auto secrets = base_ / "secrets";
  std::ofstream(secrets) << "platform-secrets 1\nAPI_KEY 3\nabc\n";
  auto s = spec("web");
  s.env["PORT"] = "9090";  // the release's config wins over the image's Env
  s.secrets_file = secrets.string();
  sandbox_->start(s);
  ASSERT_TRUE(eventually_contains(sandbox_->stdout_path("web"), "listening on port 9090"))
      << slurp(sandbox_->stderr_path("web"));
  // Look inside through /proc/<pid>: the process's user, cwd and its view of the secrets file.
  auto pid = slurp(base_ / "state/instances/web/pid");
  const fs::path proc = "/proc/" + pid;
  EXPECT_NE(slurp(proc / "status").find("Uid:\t1000"), std::string::npos);
  EXPECT_EQ(fs::read_symlink(proc / "cwd"), "/srv");
  EXPECT_EQ(slurp(proc / "root/run/platform/secrets"), "platform-secrets 1\nAPI_KEY 3\nabc\n");
  std::ofstream write_attempt(proc / "root/run/platform/secrets", std::ios::app);
  EXPECT_FALSE(write_attempt.good()) << "the secrets file is writable inside the instance";
  std::ostringstream environ;
  environ << std::ifstream(proc / "environ").rdbuf();
  EXPECT_NE(environ.str().find(std::string("GREETING=from-image\0", 20)), std::string::npos);
  EXPECT_NE(environ.str().find("PLATFORM_INSTANCE_ID=web"), std::string::npos);
  // The image's rootfs is never written: the instance has its own upper layer.
  std::ofstream(proc / "root/srv/written-by-instance") << "x";
  EXPECT_FALSE(fs::exists(rootfs_ / "srv/written-by-instance"));
  auto st = sandbox_->stop("web", std::chrono::seconds(10));
  EXPECT_EQ(st.exit_code, 0) << st.describe();  // it exits 0 on SIGTERM
}

TEST_F(SandboxTest, AProcessPastItsMemoryLimitIsReportedAsOom) {
  auto s = spec("hungry");
  s.memory_mib = 32;
  s.env["ECHO_ALLOC_MIB"] = "256";
  sandbox_->start(s);
  auto st = sandbox_->wait("hungry", std::chrono::seconds(30));
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->oom) << st->describe();
  EXPECT_EQ(st->signal, 9);
  EXPECT_EQ(st->describe(), "killed for running out of memory (OOM)");
}

TEST_F(SandboxTest, StopWaitsTheGracePeriodThenKills) {
  auto s = spec("stubborn");
  s.env["ECHO_IGNORE_TERM"] = "1";
  sandbox_->start(s);
  ASSERT_TRUE(eventually_contains(sandbox_->stdout_path("stubborn"), "listening on port"));
  auto t = std::chrono::steady_clock::now();
  auto st = sandbox_->stop("stubborn", std::chrono::milliseconds(500));
  EXPECT_GE(std::chrono::steady_clock::now() - t, std::chrono::milliseconds(500));
  EXPECT_EQ(st.signal, 9);
  EXPECT_FALSE(st.oom);
}

TEST_F(SandboxTest, ARestartedAgentAdoptsRunningInstancesAndLearnsHowTheyEnd) {
  sandbox_->start(spec("adopted"));
  ASSERT_TRUE(eventually_contains(sandbox_->stdout_path("adopted"), "listening on port"));
  // The agent goes away (its Sandbox with it); the instance and its shim keep running.
  sandbox_ = std::make_unique<agent::Sandbox>((base_ / "state").string(), PLATFORM_AGENT_BIN);
  EXPECT_EQ(sandbox_->running(), std::vector<std::string>{"adopted"});
  EXPECT_FALSE(sandbox_->wait("adopted", std::chrono::milliseconds(50)));
  auto st = sandbox_->stop("adopted", std::chrono::seconds(10));
  EXPECT_EQ(st.exit_code, 0) << st.describe();
  EXPECT_TRUE(sandbox_->running().empty());
  EXPECT_THROW(sandbox_->start(spec("adopted")), PlatformError);  // an id is never started twice
}

TEST_F(SandboxTest, HealthProbesReachTheInstanceInsideItsNetwork) {
  sandbox_->start(spec("probed"));
  ASSERT_TRUE(eventually_contains(sandbox_->stdout_path("probed"), "listening on port 8080"));
  const auto pid = static_cast<pid_t>(std::stol(slurp(base_ / "state/instances/probed/pid")));
  manifest::HealthCheck c;
  c.port = 8080;
  c.timeout_ms = 2000;
  c.type = "tcp";
  EXPECT_TRUE(agent::probe(c, {pid, "127.0.0.1"}).ok);
  c.type = "http";
  c.path = "/healthz";
  auto ok = agent::probe(c, {pid, "127.0.0.1"});
  EXPECT_TRUE(ok.ok) << ok.error;
  c.path = "/not-http";  // the sample echoes anything else back: not an HTTP answer
  auto echoed = agent::probe(c, {pid, "127.0.0.1"});
  EXPECT_FALSE(echoed.ok);
  EXPECT_EQ(echoed.error, "the answer to GET /not-http is not HTTP");
  c.type = "tcp";
  c.port = 9999;
  auto refused = agent::probe(c, {pid, "127.0.0.1"});
  EXPECT_FALSE(refused.ok);
  EXPECT_EQ(refused.error, "cannot connect to port 9999: Connection refused");
}

TEST_F(SandboxTest, ExecRunsACommandInsideTheInstanceWithItsStatusAndOutput) {
  sandbox_->start(spec("execd"));
  ASSERT_TRUE(eventually_contains(sandbox_->stdout_path("execd"), "listening on port 8080"));
  // The sample exits at once with ECHO_EXIT: a command that succeeds, fails, or is missing.
  auto ok = sandbox_->exec("execd", {"/app/echo"}, {{"ECHO_EXIT", "0"}}, std::chrono::seconds(10));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  auto failed = sandbox_->exec("execd", {"/app/echo"}, {{"ECHO_EXIT", "4"}}, std::chrono::seconds(10));
  EXPECT_EQ(failed.exit_code, 4);
  EXPECT_NE(failed.output.find("exiting with status 4"), std::string::npos) << failed.output;
  // A command that cannot start says so as a shell would, not in runc's words: 127 when it is not
  // there (by path or on $PATH), 126 when it is there but cannot be run (a folder).
  auto missing = sandbox_->exec("execd", {"/app/nope"}, {}, std::chrono::seconds(10));
  EXPECT_EQ(missing.exit_code, 127) << missing.output;
  EXPECT_EQ(missing.output, "cannot run /app/nope: no such file or directory\n");
  EXPECT_FALSE(missing.timed_out);
  auto not_on_path = sandbox_->exec("execd", {"nope"}, {}, std::chrono::seconds(10));
  EXPECT_EQ(not_on_path.exit_code, 127) << not_on_path.output;
  EXPECT_NE(not_on_path.output.find("cannot run nope: executable file not found"), std::string::npos)
      << not_on_path.output;
  auto folder = sandbox_->exec("execd", {"/app"}, {}, std::chrono::seconds(10));
  EXPECT_EQ(folder.exit_code, 126) << folder.output;
  EXPECT_EQ(folder.output, "cannot run /app: permission denied\n");
  // A command that does not end in time is killed and says so.
  auto slow = sandbox_->exec("execd", {"/app/echo"}, {{"PORT", "8081"}}, std::chrono::milliseconds(500));
  EXPECT_TRUE(slow.timed_out);
  const auto pid = static_cast<pid_t>(std::stol(slurp(base_ / "state/instances/execd/pid")));
  manifest::HealthCheck c;
  c.type = "tcp";
  c.port = 8081;
  c.timeout_ms = 1000;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(agent::probe(c, {pid, "127.0.0.1"}).ok) << "the timed-out command is killed too";
}

TEST_F(SandboxTest, AnImageWithNothingToRunIsAClearError) {
  auto s = spec("empty");
  s.image_config = Json::object();
  try {
    sandbox_->start(s);
    ADD_FAILURE() << "started";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.error().code, ErrorCode::invalid_request);
    EXPECT_NE(e.error().hint.find("command"), std::string::npos);
  }
  started_.clear();
  sandbox_->destroy("empty");
}

// A command the image does not have: the start fails with one line in a shell's words (it becomes the
// reason of InstanceStartFailed), not runc's log.
TEST_F(SandboxTest, ACommandTheImageLacksFailsTheStartInOneClearLine) {
  auto s = spec("nocmd");
  s.image_config["Entrypoint"] = Json::array({"/nonexistent/bin"});
  try {
    sandbox_->start(s);
    ADD_FAILURE() << "started";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.error().message, "cannot run /nonexistent/bin: no such file or directory");
    EXPECT_NE(e.error().hint.find("command"), std::string::npos) << e.error().hint;
  }
}

// `platform exec -i/-it`: a command the instance does not have ends the session at once with a shell's
// status and words (without a terminal runc's own line would otherwise pass for the command's output);
// one that is there, by path or along PATH, runs.
TEST_F(SandboxTest, ASessionWhoseCommandIsNotThereEndsAtOnceInAShellsWords) {
  sandbox_->start(spec("sess"));
  ASSERT_TRUE(eventually_contains(sandbox_->stdout_path("sess"), "listening on port")) << slurp(sandbox_->stderr_path("sess"));
  auto missing = sandbox_->open_session("sess", {"/app/nope"}, {}, false, 24, 80);
  EXPECT_EQ(missing->wait(std::chrono::seconds(5)), 127);
  EXPECT_EQ(missing->start_failure(), "cannot run /app/nope: no such file or directory");
  char byte = 0;
  EXPECT_EQ(::read(missing->fd(), &byte, 1), 0) << "its output ends at once";
  auto bare = sandbox_->open_session("sess", {"nope"}, {}, true, 24, 80);
  EXPECT_EQ(bare->wait(std::chrono::seconds(5)), 127);
  EXPECT_EQ(bare->start_failure(), "cannot run nope: executable file not found in $PATH");
  auto by_path = sandbox_->open_session("sess", {"/app/echo"}, {{"ECHO_EXIT", "4"}}, false, 24, 80);
  EXPECT_EQ(by_path->wait(std::chrono::seconds(20)), 4);
  EXPECT_EQ(by_path->start_failure(), "");
  auto on_path = sandbox_->open_session("sess", {"echo"}, {{"ECHO_EXIT", "5"}, {"PATH", "/nowhere:/app"}}, false, 24, 80);
  EXPECT_EQ(on_path->wait(std::chrono::seconds(20)), 5);
}

// runc's JSON log after an exec that exited 255: what it says, in the words a shell would use.
TEST(RuncStartFailure, TheLogSaysWhyInAShellsWords) {
  const auto file = fs::temp_directory_path() / ("runc-log-" + std::to_string(::getpid()) + ".json");
  auto read = [&](const std::string& text) {
    std::ofstream(file) << text;
    return agent::runc_start_failure(file.string());
  };
  auto missing = read(R"({"level":"error","msg":"exec failed: unable to start container process: exec: \"/nope\": stat /nope: no such file or directory","time":"t"})" "\n");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->why, "cannot run /nope: no such file or directory");
  EXPECT_EQ(missing->exit_code, 127);
  EXPECT_TRUE(missing->command_missing);
  auto not_on_path = read(R"({"level":"error","msg":"exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"})");
  ASSERT_TRUE(not_on_path);
  EXPECT_EQ(not_on_path->exit_code, 127);
  auto denied = read(R"({"level":"error","msg":"exec failed: unable to start container process: exec: \"/app\": permission denied"})");
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->why, "cannot run /app: permission denied");
  EXPECT_EQ(denied->exit_code, 126);
  // Another of runc's errors is passed on as runc's, with its own status.
  auto other = read("{\"level\":\"warning\",\"msg\":\"w\"}\nnot json\n{\"level\":\"error\",\"msg\":\"container not running\"}\n");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->why, "runc: container not running");
  EXPECT_EQ(other->exit_code, 255);
  EXPECT_FALSE(other->command_missing);
  EXPECT_FALSE(read(""));
  EXPECT_FALSE(read("{\"level\":\"warning\",\"msg\":\"only a warning\"}\n"));
  fs::remove(file);
  EXPECT_FALSE(agent::runc_start_failure(file.string()));  // no log at all
}

}  // namespace
}  // namespace platform
