// Issue 4's microvm story against `platformd dev --runtime microvm` (QEMU -M microvm; TCG where KVM
// cannot run guests): the host says which runtime and why; the sample image deploys as VMs that boot
// through platform-init, pass their http health checks over the VM's own network, log what they print,
// scale, restart a crashing process by its policy with its exit code, and Ctrl-C leaves no VM behind.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "tests/ingress/loopback.h"
#include "tests/support/dev_platform.h"
#include "tests/support/pty_run.h"
#include "tests/support/echo_manifest.h"

using namespace platform;
using namespace platform::e2e;

namespace {

bool can_run_microvms(std::string* why) {
  const std::filesystem::path build = std::filesystem::path(PLATFORM_AGENT_BIN).parent_path().parent_path();
  if (::geteuid() != 0) return *why = "needs root (each VM gets a network namespace and a tap device)", false;
  if (!std::filesystem::exists("/usr/bin/qemu-system-x86_64")) return *why = "needs qemu-system-x86 (scripts/setup)", false;
  if (!std::filesystem::exists(build / "guest/modules/load-order"))
    return *why = "needs the guest kernel and modules in build/guest (scripts/setup)", false;
  return true;
}

}  // namespace

TEST(MicroVmEndToEnd, InstancesRunAsMicroVmsServeLogRestartAndStop) {
  std::string why;
  if (!can_run_microvms(&why)) GTEST_SKIP() << why;
  DevPlatform dev("microvm");
  auto pushed = run(std::string("SAMPLE_ECHO=") + SAMPLE_ECHO_BIN + " " + SOURCE_DIR + "/scripts/sample-image " +
                    dev.registry());
  ASSERT_EQ(pushed.exit, 0) << pushed.out;
  const auto agent_log = [&] { return run("tail -30 " + (dev.root() / "state/agent.log").string()).out; };

  // The host says which runtime it runs instances with, and why.
  Json host;
  for (int i = 0; i < 100; ++i) {
    auto h = cli("-o json host describe dev");
    if (h.exit == 0) {
      host = one_json(h);
      if (host.contains("runtime") && host["runtime"].is_object()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(host.contains("runtime")) << host.dump() << agent_log();
  EXPECT_EQ(host["runtime"]["name"], "microvm") << host.dump();
  EXPECT_NE(host["runtime"]["reason"].get<std::string>().find("--runtime microvm"), std::string::npos) << host.dump();

  ASSERT_EQ(cli("project create vms --org dev").exit, 0);
  ASSERT_EQ(cli("app create echo --org dev --project vms").exit, 0);
  for (const char* env : {"prod", "crash"})
    ASSERT_EQ(cli(std::string("env create ") + env + " --org dev --project vms --app echo").exit, 0);
  const auto manifest = (dev.root() / "microvm.toml").string();
  std::ofstream(manifest) << harness::echo_manifest(1, R"([processes.web.restart]
backoff = "200ms"
max_attempts = 1
[processes.worker]
cpu = 0.1
memory = "64MiB"
count = 1
)");
  const auto in = [](const std::string& env) { return " --org dev --project vms --app echo --env " + env; };
  const auto image = [&](const std::string& tag) { return " --image " + dev.registry() + "/sample/echo:" + tag; };
  const std::string m = " --manifest " + manifest;

  // 1 web (http check over the VM's network) + 1 worker: both VMs boot and converge.
  ASSERT_EQ(cli("-o json deploy" + image("v1") + m + in("prod")).exit, 0);
  auto w = cli("-o json wait --timeout 180s" + in("prod"));
  ASSERT_EQ(w.exit, 0) << w.out << agent_log();
  auto st = one_json(w);
  EXPECT_EQ(instance_releases(st, "web").size(), 1u);
  EXPECT_EQ(instance_releases(st, "worker").size(), 1u);
  for (const auto& i : st["instances"]) {
    EXPECT_EQ(i["state"], "running") << i.dump();
    if (i["process"] == "web") {
      EXPECT_EQ(i["health"], "healthy") << i.dump();
    }
  }
  auto web = one_json(cli("-o json instance describe web-1" + in("prod")));
  std::string runtime;
  for (const auto& e : web["events"])
    if (e["type"] == "InstanceStarted") runtime = e["data"].value("runtime", "");
  EXPECT_EQ(runtime, "microvm") << web.dump();
  // `platform exec` runs in the VM as the process does (its user, workdir and env), over the control
  // line the health checks use, many commands at once.
  const std::string web1 = "exec web-1" + in("prod");
  auto shown = cli(web1 + " --var ECHO_SHOW=1 -- /app/echo");
  EXPECT_EQ(shown.exit, 0) << shown.out << agent_log();
  EXPECT_NE(shown.out.find("echo: uid=65534 gid=65534 cwd=/app"), std::string::npos) << shown.out;
  EXPECT_EQ(cli(web1 + " -e ECHO_EXIT=3 -- /app/echo").exit, 3);
  auto missing = cli(web1 + " -- /app/nope");
  EXPECT_EQ(missing.exit, 127) << missing.out;
  EXPECT_NE(missing.out.find("/app/nope"), std::string::npos) << missing.out;
  // --stdin crosses the control line base64-encoded and comes back byte for byte.
  const auto input = (dev.root() / "vm-exec-input").string(), copied = (dev.root() / "vm-exec-output").string();
  ASSERT_EQ(run("head -c 409600 /dev/urandom > " + input).exit, 0);
  auto cat = run(std::string(PLATFORM_BIN) + " " + web1 + " --stdin -e ECHO_CAT=1 -- /app/echo < " + input + " > " + copied +
                 " && head -c 409600 " + copied + " | cmp - " + input + " && tail -c 30 " + copied);
  EXPECT_EQ(cat.exit, 0) << cat.out;
  EXPECT_NE(cat.out.find("echo: 409600 bytes from stdin"), std::string::npos) << cat.out;
  // A command that runs long (it serves, and is killed at its timeout: exit 4) holds up neither another
  // command nor the health checks, which share the line.
  platform::e2e::Run slow;
  std::atomic<bool> slow_done{false};
  std::thread slow_thread([&] {
    slow = cli("-o json " + web1 + " --timeout 8s -e PORT=8099 -- /app/echo");
    slow_done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto quick = cli(web1 + " -e ECHO_EXIT=0 -- /app/echo");
  EXPECT_EQ(quick.exit, 0) << quick.out;
  EXPECT_FALSE(slow_done.load()) << "the quick command waited for the slow one";
  slow_thread.join();
  EXPECT_EQ(slow.exit, 4) << slow.out;
  EXPECT_EQ(one_json(slow)["timed_out"], true) << slow.out;
  // A session in the VM: `-i` streams stdin in and output out; `-it` puts the command on a terminal in
  // the guest, of the CLI's size, that follows its resizes.
  const std::string bin = PLATFORM_BIN;
  auto piped = run("printf 'hello vm\\nexit 6\\n' | " + bin + " exec -i web-1" + in("prod") + " -e ECHO_PROMPT=1 -- /app/echo");
  EXPECT_EQ(piped.exit, 6) << piped.out << agent_log();
  EXPECT_NE(piped.out.find("echo: tty=no"), std::string::npos) << piped.out;
  EXPECT_NE(piped.out.find("you said: hello vm"), std::string::npos) << piped.out;
  auto streamed = run(bin + " exec -i web-1" + in("prod") + " -e ECHO_CAT=1 -- /app/echo < " + input + " > " + copied +
                      " && head -c 409600 " + copied + " | cmp - " + input + " && tail -c 30 " + copied);
  EXPECT_EQ(streamed.exit, 0) << streamed.out;
  EXPECT_NE(streamed.out.find("echo: 409600 bytes from stdin"), std::string::npos) << streamed.out;
  {
    std::vector<std::string> argv = {bin, "exec", "-it", "web-1", "-e", "ECHO_PROMPT=1"};
    for (const auto* w : {"--org", "dev", "--project", "vms", "--app", "echo", "--env", "prod"}) argv.push_back(w);
    argv.push_back("--");
    argv.push_back("/app/echo");
    PtyRun t(argv, 33, 101);
    ASSERT_TRUE(t.wait_for("> ", std::chrono::seconds(60))) << t.output() << agent_log();
    EXPECT_NE(t.output().find("echo: tty=yes size=33x101"), std::string::npos) << t.output();
    t.type("hi vm\r");
    EXPECT_TRUE(t.wait_for("you said: hi vm", std::chrono::seconds(20))) << t.output();
    t.resize(50, 132);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    t.type("size\r");
    EXPECT_TRUE(t.wait_for("size=50x132", std::chrono::seconds(20))) << t.output();
    t.type("exit 9\r");
    EXPECT_EQ(t.finish(std::chrono::seconds(30)), 9) << t.output();
  }

  auto still = one_json(cli("-o json instance describe web-1" + in("prod")));
  EXPECT_EQ(still["state"], "running") << still.dump();
  EXPECT_EQ(still["health"], "healthy") << still.dump();

  // Logs: what each VM's process printed on its stdout port.
  std::set<std::string> listening;
  std::string last;
  for (int i = 0; i < 100 && listening.size() < 2; ++i) {
    auto logs = cli("-o json logs --source app" + in("prod"));
    ASSERT_EQ(logs.exit, 0) << logs.out;
    last = logs.out;
    const auto page = one_json(logs);
    for (const auto& l : page["lines"])
      if (l["message"].get<std::string>().find("listening on port 8080") != std::string::npos)
        listening.insert(l["instance"].get<std::string>());
    if (listening.size() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(listening.size(), 2u) << last;

  // Scale web to 2: a third VM boots and turns healthy.
  ASSERT_EQ(cli("-o json scale web=2" + in("prod")).exit, 0);
  ASSERT_EQ(cli("-o json wait --timeout 180s" + in("prod")).exit, 0) << agent_log();
  st = one_json(cli("-o json status" + in("prod")));
  EXPECT_EQ(instance_releases(st, "web").size(), 2u);

  // Reachable through the edge: an endpoint on the env's IPv6 address reaches both VMs at their own
  // addresses (the host routes each through the VM's namespace and tap), bytes exact both ways.
  auto made = cli("-o json endpoint create --port 7000 --internal-port 8080 --process web" + in("prod"));
  ASSERT_EQ(made.exit, 0) << made.out;
  const auto ep = one_json(made);
  ASSERT_EQ(ep["endpoint"]["addresses"].size(), 1u) << made.out;
  const auto v6 = ep["endpoint"]["addresses"][0]["address"].get<std::string>();
  std::set<std::string> answered;
  for (int i = 0; i < 300 && answered.size() < 2; ++i) {
    auto g = ingress::testing::echo_through(v6, 7000, "GET / HTTP/1.0\r\n\r\n");
    if (auto at = g.find("hello from "); at != std::string::npos) answered.insert(g.substr(at));
    else std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // What the edge saw (its counters, its log) and what the agent did, for a failure below.
  const auto edge_state = [&] {
    return ingress::testing::echo_through("127.0.0.1", dev.edge_metrics_port(), "GET /metrics HTTP/1.0\r\n\r\n") +
           run("tail -20 " + (dev.root() / "state/edge.log").string()).out + agent_log();
  };
  EXPECT_EQ(answered.size(), 2u) << edge_state();
  std::string payload(1 << 20, 'v');
  for (std::size_t i = 0; i < payload.size(); i += 7) payload[i] = static_cast<char>(i * 31);
  int fd = ingress::testing::connect_to(v6, 7000);
  ASSERT_GE(fd, 0);
  std::string ended;
  EXPECT_EQ(ingress::testing::sha256(ingress::testing::round_trip(fd, payload, &ended)), ingress::testing::sha256(payload))
      << ended << "\n" << edge_state();
  ::close(fd);

  // The crashing image: each run is a VM whose exit code comes back through platform-init; one restart,
  // then failed.
  ASSERT_EQ(cli("-o json deploy" + image("crash") + m + in("crash")).exit, 0);
  auto failed = cli("-o json wait --timeout 180s" + in("crash"));
  EXPECT_EQ(failed.exit, 1) << failed.out << agent_log();
  Json d;
  for (int i = 0; i < 200; ++i) {
    d = one_json(cli("-o json instance describe web-1" + in("crash")));
    if (d["state"] == "failed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(d["state"], "failed") << d.dump();
  EXPECT_EQ(d["restarts"], 1);
  EXPECT_EQ(d["last_exit"]["exit_code"], 3) << d.dump();
  int crash_lines = 0;
  const auto crash_logs = one_json(cli("-o json logs --source app --instance web-1" + in("crash")));
  for (const auto& l : crash_logs["lines"])
    crash_lines += l["message"].get<std::string>().find("exiting with status 3 (ECHO_EXIT)") != std::string::npos;
  EXPECT_EQ(crash_lines, 2) << crash_logs.dump()
                            << run(dev.psql("SELECT id, tx_id, run, stream, byte_offset FROM core.log_lines ORDER BY id")).out;

  // Ctrl-C stops every VM with everything else.
  const auto vms = "'[q]emu-system-x86_64 .*" + (dev.root() / "state/agent/microvm").string() + "'";
  EXPECT_FALSE(run("pgrep -f " + vms).out.empty());
  EXPECT_TRUE(dev.stop());
  EXPECT_EQ(run("pgrep -f " + vms).out, "") << agent_log();
}
