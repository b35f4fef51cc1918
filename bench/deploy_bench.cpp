// Deploy receipt latency: from starting the `platform` CLI process to its receipt printed (process exit),
// against a `platformd dev` this program starts on a scratch state folder with its own registry. Side by
// side in one run: a deploy that creates a release (tag resolved through the registry), the same with
// --detach, a deploy that changes nothing, a rollback, and a diff (dry run); and the resident memory of
// platform-agent and platformd serve at rest. With sandboxes (and microVMs): deploy -> all healthy, and
// in the running instance `platform exec` of one command (CLI start to exit) and a session's keystroke
// echo (`exec -it` on a terminal: a key typed to its echo shown). Prints a table, writes JSON.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "engine/json.h"
#include "engine/exec.h"
#include "engine/oci/registry.h"
#include "platformd/child.h"
#include "platformd/local_postgres.h"
#include "tests/support/echo_manifest.h"
#include "tests/support/pty_run.h"
#include "tests/support/registry_push.h"

using namespace platform;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

struct Ran {
  int exit = -1;
  std::string out;
  double ms = 0;
};

int run_shell(const std::string& command) {
  int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Runs the CLI with stdout captured; the time is from fork to exit (what a script waiting for it sees).
Ran run_cli(const std::string& cli, const std::vector<std::string>& args) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
  auto start = Clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 2);
    ::close(fds[0]);
    std::vector<std::string> argv{cli};
    argv.insert(argv.end(), args.begin(), args.end());
    exec_or_exit(argv);
  }
  ::close(fds[1]);
  Ran r;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) r.out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  r.exit = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

struct Row {
  std::string name;
  int n = 0;
  double p50 = 0, p99 = 0, mean = 0;
};

Row summarise(const std::string& name, std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  Row r{name, static_cast<int>(ms.size())};
  auto at = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<std::size_t>(q * static_cast<double>(ms.size())))]; };
  r.p50 = at(0.50);
  r.p99 = at(0.99);
  for (double x : ms) r.mean += x / static_cast<double>(ms.size());
  return r;
}

// Resident memory (VmRSS, KiB) of the first process whose command line contains every `needle`; 0 if none.
long rss_kib(const std::vector<std::string>& needles) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream cmd(entry.path() / "cmdline", std::ios::binary);
    std::string line((std::istreambuf_iterator<char>(cmd)), {});
    std::replace(line.begin(), line.end(), '\0', ' ');
    if (!std::all_of(needles.begin(), needles.end(), [&](const auto& n) { return line.find(n) != std::string::npos; }))
      continue;
    std::ifstream status(entry.path() / "status");
    for (std::string key; status >> key;) {
      if (key == "VmRSS:") {
        long kib = 0;
        status >> kib;
        return kib;
      }
      std::getline(status, key);
    }
  }
  return 0;
}

std::string manifest(int i) {
  // count = 0: the receipt cases measure the control plane alone (no instance starts); the images are
  // synthetic. The "deploy -> all healthy" cases below run the sample echo image.
  return fmt::format("schema_version = 1\n[app]\nname = \"bench\"\n[processes.web]\ncount = {}\nmemory = \"{}MiB\"\n"
                     "[processes.web.health]\ntype = \"tcp\"\nport = 8080\n[[endpoints]]\nport = 7000\n"
                     "internal_port = 8080\nprocess = \"web\"\n[config]\noptional = [\"LOG_LEVEL\"]\n",
                     0, 128 + i);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Deploy receipt latency against platformd dev"};
  int iterations = 100;
  bool quick = false;
  std::string json_path = "deploy_bench.json";
  std::string platformd = PLATFORMD_BIN, cli = PLATFORM_BIN;
  app.add_option("--iterations", iterations, "Runs per case")->check(CLI::Range(2, 10000));
  app.add_option("--json", json_path, "Where to write the JSON results");
  app.add_flag("--quick", quick, "A short run that only checks everything works");
  app.add_option("--platformd", platformd, "platformd binary");
  app.add_option("--platform", cli, "platform CLI binary");
  CLI11_PARSE(app, argc, argv);
  if (quick) iterations = 4;

  char tmpl[] = "/tmp/platform-deploy-bench-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  const fs::path root = tmpl;
  fs::permissions(root, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec);  // postgres runs as its own user
  ::setenv("PLATFORM_CONFIG", (root / "cli.json").c_str(), 1);
  // platformd dev on its own state folder and ports, its agent with `runtime`; returns once it serves.
  struct Dev {
    pid_t pid = -1;
    fs::path state;
    std::string registry;
  };
  auto start_dev = [&](const std::string& name, const std::string& runtime) {
    Dev d;
    d.state = root / name;
    const int api_port = dev::free_loopback_port(20000, 26000), pg_port = dev::free_loopback_port(26000, 29000),
              registry_port = dev::free_loopback_port(29000, 32000);
    d.registry = "127.0.0.1:" + std::to_string(registry_port);
    // Pools and edge ports of its own, apart from a `platformd dev` the user runs (the defaults) and from
    // the e2e tests' platforms (numbers 1 to 250: tests/support/dev_platform.h).
    const int tls_port = dev::free_loopback_port(16000, 18000), metrics_port = dev::free_loopback_port(18000, 20000);
    d.pid = dev::spawn({platformd, "dev", "--state", d.state.string(), "--api-port", std::to_string(api_port), "--pg-port",
                        std::to_string(pg_port), "--registry-port", std::to_string(registry_port), "--runtime", runtime,
                        "--ipv6-pool", "fd70:6c61:7466:fb::/112", "--ipv4-pool", "127.78.251.0/28", "--instance-pool",
                        "10.213.251.0/24", "--edge-tls-listen", "[::1]:" + std::to_string(tls_port), "--edge-metrics",
                        "127.0.0.1:" + std::to_string(metrics_port)},
                       {(root / (name + ".log")).string(), false, SIGTERM});
    for (int i = 0;; ++i) {
      if (run_cli(cli, {"org", "list"}).exit == 0) break;
      if (i > 600 || !dev::child_running(d.pid))
        throw std::runtime_error("platformd dev did not come up:\n" + dev::tail_of((root / (name + ".log")).string()));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return d;
  };
  // Deploy -> all healthy: CLI deploy start to `platform wait` converged (the new instance started,
  // healthy, the old one stopped). Cold: the image is not on the host yet (each sample tag's first
  // deploy); cached: deploys alternating between two images already pulled.
  auto measure_healthy = [&](const Dev& d, std::vector<double>& cold, std::vector<double>& cached) {
    auto pushed = run_shell("SAMPLE_ECHO=" + std::string(SAMPLE_ECHO_BIN) + " " + SOURCE_DIR + "/scripts/sample-image " +
                            d.registry + " >/dev/null 2>&1");
    if (pushed != 0) throw std::runtime_error("scripts/sample-image failed");
    run_cli(cli, {"project", "create", "bench", "--org", "dev"});  // exists already on the first platform
    if (run_cli(cli, {"app", "create", "echo", "--org", "dev", "--project", "bench"}).exit != 0 ||
        run_cli(cli, {"env", "create", "prod", "--org", "dev", "--project", "bench", "--app", "echo"}).exit != 0)
      throw std::runtime_error("setting up the echo app failed");
    const auto healthy = (d.state.parent_path() / "healthy.toml").string();
    std::ofstream(healthy) << harness::echo_manifest(1);  // one web instance with an http check
    const std::vector<std::string> echo_at = {"--org", "dev", "--project", "bench", "--app", "echo", "--env", "prod"};
    auto deploy_until_healthy = [&](const std::string& tag) {
      std::vector<std::string> dep = {"-o", "json", "deploy", "--image", d.registry + "/sample/echo:" + tag, "--manifest", healthy};
      std::vector<std::string> w = {"-o", "json", "wait", "--timeout", "180s"};
      dep.insert(dep.end(), echo_at.begin(), echo_at.end());
      w.insert(w.end(), echo_at.begin(), echo_at.end());
      auto r = run_cli(cli, dep);
      if (r.exit != 0) throw std::runtime_error("deploy (echo) failed: " + r.out);
      auto waited = run_cli(cli, w);
      if (waited.exit != 0) throw std::runtime_error("wait (echo) failed: " + waited.out);
      return r.ms + waited.ms;
    };
    cold.push_back(deploy_until_healthy("v1"));
    cold.push_back(deploy_until_healthy("v2"));
    for (int i = 0; i < std::max(4, iterations / 5); ++i) cached.push_back(deploy_until_healthy(i % 2 ? "v2" : "v1"));
  };
  // In the running web instance: one command through `platform exec` (CLI start to exit), and in one
  // `exec -it` session on a terminal, each key typed to its echo on the screen (the whole path: CLI,
  // API, PostgreSQL, agent, the instance's terminal and back).
  auto measure_exec = [&](std::vector<double>& exec_ms, std::vector<double>& echo_ms) {
    const std::vector<std::string> echo_at = {"--org", "dev", "--project", "bench", "--app", "echo", "--env", "prod"};
    std::vector<std::string> one = {"exec", "web", "-e", "ECHO_EXIT=0"};
    one.insert(one.end(), echo_at.begin(), echo_at.end());
    one.insert(one.end(), {"--", "/app/echo"});
    for (int i = 0; i < std::max(4, iterations / 2); ++i) {
      auto r = run_cli(cli, one);
      if (r.exit != 0) throw std::runtime_error("exec failed: " + r.out);
      exec_ms.push_back(r.ms);
    }
    std::vector<std::string> session = {cli, "exec", "-it", "web", "-e", "ECHO_PROMPT=1"};
    session.insert(session.end(), echo_at.begin(), echo_at.end());
    session.insert(session.end(), {"--", "/app/echo"});
    e2e::PtyRun t(session, 24, 80);
    if (!t.wait_for("> ", std::chrono::seconds(60))) throw std::runtime_error("the session showed no prompt: " + t.output());
    std::string typed;
    for (int i = 0; i < std::max(10, iterations / 2); ++i) {
      const char key = static_cast<char>('a' + i % 26);
      typed.push_back(key);
      const auto at = Clock::now();
      t.type(std::string(1, key));
      if (!t.wait_for("> " + typed, std::chrono::seconds(10))) throw std::runtime_error("no echo: " + t.output());
      echo_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - at).count());
    }
    t.type("\rexit 0\r");
    if (t.finish(std::chrono::seconds(30)) != 0) throw std::runtime_error("the session did not end: " + t.output());
  };
  const bool sandboxes = ::geteuid() == 0 && fs::exists("/usr/sbin/runc");
  const bool microvms = ::geteuid() == 0 && fs::exists("/usr/bin/qemu-system-x86_64") &&
                        fs::exists(fs::path(PLATFORM_AGENT_BIN).parent_path().parent_path() / "guest/modules/load-order");
  Dev first;
  int rc = 0;
  try {
    first = start_dev("state", "sandbox");
    const std::string registry = first.registry;
    // At rest: a few seconds after start, before any deploy (the agent has enrolled and sends heartbeats).
    std::this_thread::sleep_for(std::chrono::seconds(quick ? 1 : 5));
    const long agent_rss = rss_kib({"platform-agent", (root / "state").string()});
    const long serve_rss = rss_kib({"platformd", "serve", (root / "state").string()});
    oci::RegistryClient rc_client;
    for (const auto& tag : {"v1", "v2"}) {
      auto ref = oci::parse_image_ref(registry + "/bench/app:" + tag);
      harness::push_manifest(rc_client, ref, tag, oci::kOciManifest,
                             harness::push_image(rc_client, ref, "amd64", std::string("bench layer ") + tag));
    }
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"project", "create", "bench", "--org", "dev"},
             {"app", "create", "bench", "--org", "dev", "--project", "bench"},
             {"env", "create", "prod", "--org", "dev", "--project", "bench", "--app", "bench"}})
      if (run_cli(cli, args).exit != 0) throw std::runtime_error("setting up the app failed");
    const std::vector<std::string> at = {"--org", "dev", "--project", "bench", "--app", "bench", "--env", "prod"};
    auto with = [&](std::vector<std::string> a) {
      a.insert(a.begin(), {"-o", "json"});
      a.insert(a.end(), at.begin(), at.end());
      return a;
    };
    std::vector<fs::path> files;
    for (int i = 0; i < 2 * iterations + 2; ++i) {
      files.push_back(root / fmt::format("m{}.toml", i));
      std::ofstream(files.back()) << manifest(i);
    }
    auto expect = [](const Ran& r, const char* what) {
      if (r.exit != 0) throw std::runtime_error(std::string(what) + " failed: " + r.out);
      return r.ms;
    };
    std::vector<double> created, detached, unchanged, rollback, diff;
    int f = 0;
    for (int i = 0; i < iterations; ++i) {
      const auto image = registry + "/bench/app:" + (i % 2 ? "v2" : "v1");
      created.push_back(expect(run_cli(cli, with({"deploy", "--image", image, "--manifest", files[f++].string()})), "deploy"));
      unchanged.push_back(expect(run_cli(cli, with({"deploy", "--image", image, "--manifest", files[f - 1].string()})),
                                 "deploy (unchanged)"));
      diff.push_back(run_cli(cli, with({"diff", "--image", image, "--manifest", files[f].string()})).ms);
      detached.push_back(expect(run_cli(cli, with({"deploy", "--detach", "--image", image, "--manifest", files[f++].string()})),
                                "deploy --detach"));
      rollback.push_back(expect(run_cli(cli, with({"rollback"})), "rollback"));
    }
    std::vector<Row> rows = {summarise("deploy (new release)", created), summarise("deploy --detach (new release)", detached),
                             summarise("deploy (nothing changed)", unchanged), summarise("rollback", rollback),
                             summarise("diff (dry run)", diff)};

    std::vector<double> cold, cached, vm_cold, vm_cached, exec_ms, echo_ms, vm_exec_ms, vm_echo_ms;
    if (sandboxes) {
      measure_healthy(first, cold, cached);
      measure_exec(exec_ms, echo_ms);
      rows.push_back(summarise("-> healthy, sandbox, cold", cold));
      rows.push_back(summarise("-> healthy, sandbox, cached", cached));
      rows.push_back(summarise("exec one command, sandbox", exec_ms));
      rows.push_back(summarise("session key echo, sandbox", echo_ms));
    } else {
      fmt::print("(sandbox deploy -> healthy cases skipped: they need root and runc)\n");
    }
    dev::stop_child(first.pid, SIGTERM, std::chrono::seconds(60));
    first.pid = -1;
    if (microvms) {  // a second platformd dev whose agent runs microVMs (TCG where KVM cannot run guests)
      first = start_dev("state-microvm", "microvm");
      measure_healthy(first, vm_cold, vm_cached);
      measure_exec(vm_exec_ms, vm_echo_ms);
      dev::stop_child(first.pid, SIGTERM, std::chrono::seconds(60));
      first.pid = -1;
      rows.push_back(summarise("-> healthy, microvm, cold", vm_cold));
      rows.push_back(summarise("-> healthy, microvm, cached", vm_cached));
      rows.push_back(summarise("exec one command, microvm", vm_exec_ms));
      rows.push_back(summarise("session key echo, microvm", vm_echo_ms));
    } else {
      fmt::print("(microvm deploy -> healthy cases skipped: they need root, QEMU and build/guest from scripts/setup)\n");
    }
    fmt::print("Deploy latency against platformd dev: receipt cases from CLI start to receipt printed; "
               "\"-> healthy\" cases from deploy start to `platform wait` converged; exec from CLI start to exit; "
               "key echo from a key typed in an `exec -it` session to its echo shown\n");
    fmt::print("{:<30} | {:>5} | {:>8} {:>8} {:>8}\n", "case", "runs", "p50 ms", "p99 ms", "mean ms");
    Json out = Json::array();
    for (const auto& r : rows) {
      fmt::print("{:<30} | {:>5} | {:>8.1f} {:>8.1f} {:>8.1f}\n", r.name, r.n, r.p50, r.p99, r.mean);
      out.push_back({{"case", r.name}, {"runs", r.n}, {"p50_ms", r.p50}, {"p99_ms", r.p99}, {"mean_ms", r.mean}});
    }
    if (!cached.empty()) {
      const auto p50 = summarise("", cached).p50;
      fmt::print("\nDeploy -> all healthy, sandbox, cached image: p50 {:.0f} ms (goal < 1000 ms: {})\n", p50,
                 p50 < 1000 ? "met" : "NOT met");
    }
    if (!vm_cached.empty())
      fmt::print("Deploy -> all healthy, microvm (KVM where it runs guests, else TCG emulation), cached image: "
                 "p50 {:.0f} ms\n",
                 summarise("", vm_cached).p50);
    fmt::print("\nResident memory at rest (before the deploys): platform-agent {:.1f} MiB (goal < 20 MiB: {}), "
               "platformd serve {:.1f} MiB\n",
               agent_rss / 1024.0, agent_rss > 0 && agent_rss < 20 * 1024 ? "met" : "NOT met", serve_rss / 1024.0);
    std::ofstream(json_path) << Json{{"benchmark", "deploy"}, {"quick", quick}, {"cases", out},
                                     {"rss_at_rest_kib", {{"platform_agent", agent_rss}, {"platformd_serve", serve_rss}}}}
                                    .dump(2)
                             << "\n";
    fmt::print("JSON written to {}\n", json_path);
  } catch (const std::exception& e) {
    std::cerr << "deploy_bench: " << e.what() << "\n";
    rc = 1;
  }
  if (first.pid > 0) dev::stop_child(first.pid, SIGTERM, std::chrono::seconds(60));
  std::error_code ec;
  fs::remove_all(root, ec);
  return rc;
}
