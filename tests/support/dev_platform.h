#pragma once
// End-to-end harness: `platformd dev` on its own state folder and ports (its own PostgreSQL, registry
// and agent), driven by the `platform` CLI and psql. The test binary defines PLATFORMD_BIN and
// PLATFORM_BIN (tests/CMakeLists.txt) and runs under tests/support/pg_main.cpp.
#include <gtest/gtest.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "engine/json.h"
#include "platformd/machine_name.h"
#include "tests/support/pg.h"
#include "tests/support/process.h"

namespace platform::e2e {
struct Run {
  int exit = -1;
  std::string out;
};

inline Run run(const std::string& cmd) {
  Run r;
  FILE* f = ::popen((cmd + " 2>/dev/null").c_str(), "r");
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) r.out.append(buf, n);
  int status = ::pclose(f);
  r.exit = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline Run cli(const std::string& args) { return run(std::string(PLATFORM_BIN) + " " + args); }

// The containers runc has under `root`, one id a line. runc 1.1 (Debian 12) ends `list` with an error and
// prints nothing when a container it is listing is deleted meanwhile (kubernetes/minikube#17976), and
// other envs' instances come and go during a test, so a failed listing is tried again (bounded).
inline Run runc_list(const std::string& root) {
  Run r;
  for (int attempt = 0; attempt < 50; ++attempt) {
    r = run("runc --root " + root + " list -q");
    if (r.exit == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return r;
}

// A port free on ::1 (and on 127.0.0.1) in [lo, hi).
inline int free_on_ipv6_loopback(int lo, int hi) {
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int port = dev::free_loopback_port(lo, hi);
    int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(static_cast<std::uint16_t>(port));
    a.sin6_addr = in6addr_loopback;
    const bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (free) return port;
  }
  return dev::free_loopback_port(lo, hi);
}

// A number for one platform's address pools that no other DevPlatform on the machine holds while this
// one lives. Derived from a random port alone, two e2e tests running at once got the same number one
// time in 250, and with it the same env addresses and instance addresses.
class NetSlot {
 public:
  explicit NetSlot(int first) {
    for (int i = 0; i < 250; ++i) {
      const int n = (first - 1 + i) % 250 + 1;
      name_.emplace("platform-e2e-net-" + std::to_string(n));
      if (name_->held()) {
        n_ = n;
        return;
      }
    }
    throw std::runtime_error("all 250 e2e network numbers are held by other tests");
  }
  int number() const { return n_; }

 private:
  std::optional<dev::MachineName> name_;
  int n_ = 0;
};

class DevPlatform {
 public:
  // `runtime`: the dev agent's --runtime (auto, microvm or sandbox).
  explicit DevPlatform(std::string runtime = "sandbox") : runtime_(std::move(runtime)) {
    root_ = harness::PgEnvironment::get().root() / "e2e";
    std::filesystem::create_directories(root_);
    ::setenv("PLATFORM_CONFIG", (root_ / "cli.json").c_str(), 1);
    start();
  }
  void start() {
    child_ = std::make_unique<harness::Child>(
        std::vector<std::string>{PLATFORMD_BIN, "dev", "--state", (root_ / "state").string(), "--api-port",
                                 std::to_string(api_port_), "--pg-port", std::to_string(pg_port_),
                                 "--registry-port", std::to_string(registry_port_), "--runtime", runtime_,
                                 "--ipv6-pool", ipv6_pool(), "--ipv4-pool", ipv4_pool(), "--instance-pool",
                                 instance_pool(), "--edge-tls-listen", "[::1]:" + std::to_string(tls_port_),
                                 "--edge-metrics", "127.0.0.1:" + std::to_string(edge_metrics_port_)},
        (root_ / "dev.log").string());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
    while (std::chrono::steady_clock::now() < deadline) {
      if (cli("org list -o json").exit == 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    // What it was doing, so that a start that failed on a loaded machine can be told from one that hung.
    FAIL() << "platformd dev did not come up within 90 s; its output:\n"
           << run("tail -20 " + (root_ / "dev.log").string()).out << "platformd.log:\n"
           << run("tail -20 " + (root_ / "state/platformd.log").string()).out << "postgres.log:\n"
           << run("tail -10 " + (root_ / "state/postgres.log").string()).out;
  }
  // SIGTERM; returns the exit status and whether postgres is gone with it.
  bool stop() {
    child_->signal(SIGTERM);
    int status = child_->wait(std::chrono::seconds(60));
    auto pidfile = root_ / "state/postgres/postmaster.pid";
    if (status != 0) std::cerr << "platformd dev exited with status " << status << "; its log:\n" << run("tail -20 " + (root_ / "dev.log").string()).out;
    // platformd dev exits 0 (also when stopped while still starting) and leaves no postgres or registry behind.
    // "[d]": the pattern must not match the shell that runs pgrep.
    bool registry_gone = run("pgrep -f '[d]ocker-registry serve " + (root_ / "state/registry").string() + "'").out.empty();
    bool agent_gone = run("pgrep -f '[p]latform-agent .*--state " + (root_ / "state/agent").string() + "'").out.empty();
    return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0 && !std::filesystem::exists(pidfile) &&
           registry_gone && agent_gone;
  }
  std::string conninfo() const {
    return "host=" + (root_ / "state/run").string() + " port=" + std::to_string(pg_port_) +
           " user=platform dbname=platform";
  }
  std::string psql(const std::string& sql) const {
    return "psql '" + conninfo() + "' -v ON_ERROR_STOP=1 -At -c \"" + sql + "\"";
  }
  const std::filesystem::path& root() const { return root_; }
  // Whatever a failed test left of the dev host's instances (shims, containers, overlay mounts) goes.
  // A test that ended without stop() (an assertion returned early) still stops platformd dev the way
  // stop() does: a SIGKILL would leave its PostgreSQL shutting down in the state folder the next test
  // starts on.
  ~DevPlatform() {
    if (child_ && child_->pid() > 0) {
      child_->signal(SIGTERM);
      child_->wait(std::chrono::seconds(60));
    }
    remove_agent_leftovers(root_ / "state/agent");
  }
  // Kills the agent with that state folder and everything its sandboxes and microVMs still run.
  static void remove_agent_leftovers(const std::filesystem::path& agent_state) {
    const auto sandbox = (agent_state / "sandbox").string();
    const auto microvm = (agent_state / "microvm").string();
    run("pkill -9 -f '[p]latform-agent .*--state " + agent_state.string() + "'");
    run("pkill -9 -f '[p]latform-agent vm-shim --dir " + microvm + "'");
    run("pkill -9 -f '[q]emu-system-x86_64 .*" + microvm + "'");
    run("pkill -9 -f '[p]latform-agent shim --dir " + sandbox + "'");
    std::istringstream containers(runc_list(sandbox + "/runc").out);
    for (std::string c; containers >> c;) run("runc --root " + sandbox + "/runc delete --force " + c);
    run("grep -o ' " + sandbox + "/[^ ]*' /proc/mounts | xargs -r -n1 umount -l");
    // Each run's network namespace is named after its id (agent/run_network.cpp); with it go its veth
    // pair and the host's route to its address.
    run("for d in " + sandbox + "/instances/* " + microvm + "/instances/*; do [ -d \"$d\" ] && ip netns del plr-$(printf %s "
        "\"$(basename \"$d\")\" | sha256sum | cut -c1-10); done");
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(api_port_); }
  // This platform's own address pools and edge ports, so that two of them on one machine never meet.
  std::string ipv6_pool() const { return "fd70:6c61:7466:" + std::to_string(net_) + "::/112"; }
  std::string ipv4_pool() const { return "127.78." + std::to_string(net_) + ".0/28"; }
  std::string instance_pool() const { return "10.213." + std::to_string(net_) + ".0/24"; }
  int tls_port() const { return tls_port_; }
  int edge_metrics_port() const { return edge_metrics_port_; }
  std::string registry() const { return "127.0.0.1:" + std::to_string(registry_port_); }

 private:
  std::string runtime_;
  std::filesystem::path root_;
  int api_port_ = dev::free_loopback_port(20000, 26000);
  int pg_port_ = dev::free_loopback_port(26000, 29000);
  int registry_port_ = dev::free_loopback_port(29000, 32000);
  // Below the ephemeral range (32768 and up), so no client socket of another test holds them.
  int tls_port_ = free_on_ipv6_loopback(16000, 18000);
  int edge_metrics_port_ = dev::free_loopback_port(18000, 20000);
  NetSlot net_slot_{api_port_ % 250 + 1};
  int net_ = net_slot_.number();
  std::unique_ptr<harness::Child> child_;
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

inline Json one_json(const Run& r) {
  // -o json prints exactly one JSON document on stdout: parsing the whole output must succeed.
  return Json::parse(r.out);
}
// Every instance of the status answer, by process, with their releases.
inline std::multiset<std::string> instance_releases(const Json& st, const std::string& process) {
  std::multiset<std::string> out;
  for (const auto& i : st["instances"])
    if (i["process"] == process && i["desired"] == "run") out.insert(i["release"]["name"].get<std::string>());
  return out;
}

inline bool can_run_sandboxes() { return ::geteuid() == 0 && std::filesystem::exists("/usr/sbin/runc"); }
}  // namespace platform::e2e
