// platform-agent: enrols once with a join token, keeps its credential in its state folder, sends a
// heartbeat with its report (capacity, runtime and why), watches its assignment set and converges the
// host on it, and sends its reports through an outbox, until SIGINT or SIGTERM. See docs/agent.md.
#include <CLI/CLI.hpp>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "agent/converge.h"
#include "agent/exec_requests.h"
#include "agent/host.h"
#include "agent/microvm_runtime.h"
#include "agent/sandbox.h"
#include "agent/outbox.h"
#include "agent/shim.h"
#include "agent/vm_shim.h"
#include "api/client.h"
#include "engine/crypto.h"
#include "engine/error.h"
#include "engine/version.h"

using namespace platform;

namespace {
volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_signal(int) { g_stop = 1; }

// Sleeps up to `d`, waking early for a stop signal.
void sleep_for(std::chrono::milliseconds d) {
  for (auto end = std::chrono::steady_clock::now() + d; !g_stop && std::chrono::steady_clock::now() < end;)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

// The shim is this binary (`platform-agent shim`).
std::string self_binary(const char* argv0) {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(argv0) : p.string();
}

// The microVM guest kit beside this binary: the build tree (build/agent/platform-agent with
// build/agent/platform-init and build/guest/) or an install (<prefix>/lib/platform/guest/).
agent::GuestKit default_guest(const std::string& self) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(self).parent_path();
  agent::GuestKit kit;
  kit.init = (dir / "platform-init").string();
  for (const auto& g : {dir.parent_path() / "guest", dir.parent_path() / "lib" / "platform" / "guest"})
    if (fs::exists(g / "vmlinuz")) {
      kit.kernel = (g / "vmlinuz").string();
      kit.modules_dir = (g / "modules").string();
      return kit;
    }
  kit.kernel = (dir.parent_path() / "guest" / "vmlinuz").string();
  kit.modules_dir = (dir.parent_path() / "guest" / "modules").string();
  return kit;
}

void heartbeat_loop(const api::Client& client, const std::string& state, const agent::RuntimeChoice& runtime) {
  std::chrono::milliseconds interval{5000};
  bool reported_failure = false;
  while (!g_stop) {
    try {
      auto r = client.call("POST", "/v1/hosts/heartbeat", Json{{"report", agent::host_report(state, runtime)}}, std::string(),
                           std::chrono::seconds(10));
      interval = std::chrono::milliseconds(std::clamp<std::int64_t>(r.value("heartbeat_interval_ms", 5000), 200, 60000));
      if (reported_failure || r.value("previous_state", "up") == "down")
        std::cerr << "platform-agent: heartbeats accepted again\n";
      reported_failure = false;
    } catch (const PlatformError& e) {
      if (e.error().code == ErrorCode::unauthenticated) {  // the credential is gone: no retry helps
        std::cerr << "platform-agent: the control plane no longer knows this host's credential: " << e.what()
                  << "\nhint: enrol again with a new join token (move the state folder's host.json away)\n";
        g_stop = 1;
        return;
      }
      if (!reported_failure) std::cerr << "platform-agent: heartbeat failed: " << e.what() << " (retrying)\n";
      reported_failure = true;
    } catch (const std::exception& e) {
      if (!reported_failure) std::cerr << "platform-agent: heartbeat failed: " << e.what() << " (retrying)\n";
      reported_failure = true;
    }
    sleep_for(interval);
  }
}

// Sends the outbox in order, in batches of up to 100; a batch leaves the outbox only once taken.
void report_loop(const api::Client& client, agent::Outbox& outbox) {
  bool reported_failure = false;
  while (!g_stop) {
    auto batch = outbox.next(100, std::chrono::milliseconds(500));
    if (batch.files.empty()) continue;
    try {
      auto r = client.call("POST", "/v1/agent/reports", Json{{"reports", batch.reports}}, std::string(),
                           std::chrono::seconds(15));
      for (const auto& x : r.value("rejected", Json::array()))
        std::cerr << "platform-agent: report " << x.value("event_id", "") << " refused: " << x.value("reason", "") << "\n";
      outbox.remove(batch);
      reported_failure = false;
    } catch (const std::exception& e) {
      if (!reported_failure) std::cerr << "platform-agent: sending reports failed: " << e.what() << " (retrying)\n";
      reported_failure = true;
      sleep_for(std::chrono::seconds(1));
    }
  }
}

// Sends what is left in the outbox, for up to `budget` (what is not sent stays for the next start).
void flush(const api::Client& client, agent::Outbox& outbox, std::chrono::milliseconds budget) {
  for (auto end = std::chrono::steady_clock::now() + budget; std::chrono::steady_clock::now() < end;) {
    auto batch = outbox.next(100, std::chrono::milliseconds(0));
    if (batch.files.empty()) return;
    try {
      client.call("POST", "/v1/agent/reports", Json{{"reports", batch.reports}}, std::string(), std::chrono::seconds(2));
      outbox.remove(batch);
    } catch (const std::exception&) {
      return;
    }
  }
}

// The newest answer of the assignment watch, handed from the watching thread to the converging one.
struct WatchSlot {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Json> latest;
};

// The assignment watch: a long poll by version; every answer is the whole set (level-triggered). It runs
// on a thread of its own that is left behind at exit, so a pending long poll never delays a stop.
void watch_loop(std::shared_ptr<const api::Client> client, std::shared_ptr<WatchSlot> slot) {
  std::int64_t version = -1;
  bool reported_failure = false;
  while (!g_stop) {
    try {
      auto target = "/v1/agent/assignments?wait=25s" + (version >= 0 ? "&after=" + std::to_string(version) : "");
      auto set = client->call("GET", target, std::nullopt, std::string(), std::chrono::seconds(40));
      if (reported_failure) std::cerr << "platform-agent: assignment watch resumed\n";
      reported_failure = false;
      version = set.value("version", std::int64_t{-1});
      std::lock_guard lock(slot->mu);
      slot->latest = std::move(set);
      slot->cv.notify_all();
    } catch (const std::exception& e) {
      if (!reported_failure) std::cerr << "platform-agent: assignment watch failed: " << e.what() << " (retrying)\n";
      reported_failure = true;
      sleep_for(std::chrono::seconds(1));
    }
  }
}

// Applies each new answer; a timed-out poll answers the same set again, and applying it also retries
// what failed before.
void converge_loop(WatchSlot& slot, agent::Converger& converger) {
  while (!g_stop) {
    std::optional<Json> set;
    {
      std::unique_lock lock(slot.mu);
      slot.cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return slot.latest.has_value(); });
      set.swap(slot.latest);
    }
    if (set) converger.apply(*set);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"platform-agent: runs a host's share of the platform (docs/hosts.md)"};
  app.set_version_flag("--version", "platform-agent " + version_line());
  api::set_client_program("platform-agent");
  std::string join, control, state = "/var/lib/platform-agent", name;
  app.add_option("--join", join, "Join token from `platform host join-token` (first start only)");
  app.add_option("--control", control, "Control-plane API URL, e.g. http://127.0.0.1:7070");
  app.add_option("--state", state, "State folder (identity, images)")->capture_default_str();
  app.add_option("--name", name, "Host name at enrolment (default: the machine's host name)");
  bool stop_on_exit = false;
  app.add_flag("--stop-instances-on-exit", stop_on_exit,
               "Stop this host's instances when the agent exits (platformd dev); by default they keep running "
               "and a restarted agent adopts them");
  std::string runtime_name = "auto";
  app.add_option("--runtime", runtime_name,
                 "auto (microvm where KVM runs guests, else sandbox), microvm (also under TCG) or sandbox")
      ->check(CLI::IsMember({"auto", "microvm", "sandbox"}))
      ->capture_default_str();
  agent::GuestKit guest = default_guest(self_binary(argv[0]));
  app.add_option("--guest-kernel", guest.kernel, "The microVMs' kernel (scripts/setup fetches Debian's cloud kernel)")
      ->capture_default_str();
  app.add_option("--guest-modules", guest.modules_dir, "Folder with the guest's virtio modules and their load-order")
      ->capture_default_str();
  app.add_option("--platform-init", guest.init, "The microVMs' PID 1 (built beside platform-agent)")->capture_default_str();
  // `platform-agent shim ...`: one instance's shim (agent/shim.h), started by the sandbox runtime.
  agent::ShimOptions shim;
  auto* shim_cmd = app.add_subcommand("shim", "Internal: supervise one sandbox instance (started by the agent)");
  shim_cmd->add_option("--dir", shim.dir)->required();
  shim_cmd->add_option("--id", shim.id)->required();
  shim_cmd->add_option("--runc", shim.runc)->required();
  shim_cmd->add_option("--root", shim.root)->required();
  shim_cmd->group("");
  // `platform-agent vm-shim --dir D`: one microVM's shim (agent/vm_shim.h), started by the microvm runtime.
  std::string vm_dir;
  auto* vm_shim_cmd = app.add_subcommand("vm-shim", "Internal: run one microVM (started by the agent)");
  vm_shim_cmd->add_option("--dir", vm_dir)->required();
  vm_shim_cmd->group("");
  CLI11_PARSE(app, argc, argv);
  if (*shim_cmd) return agent::run_shim(shim);
  if (*vm_shim_cmd) return agent::run_vm_shim(vm_dir);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  try {
    std::filesystem::create_directories(state);
    const agent::ProcessLock one_agent((std::filesystem::path(state) / "agent.lock").string(), "platform-agent",
                                       "A host runs one agent: stop that one first (two would run this host's "
                                       "instances twice).");
    const auto runtime = agent::choose_runtime(runtime_name, guest);
    std::cerr << "platform-agent: runtime " << runtime.name << ": " << runtime.reason << "\n";
    auto id = agent::load_identity(state);
    if (id) {
      if (!join.empty()) std::cerr << "platform-agent: already enrolled as " << id->host_id << "; --join ignored\n";
      if (control.empty()) control = id->control;
    } else {
      if (join.empty() || control.empty())
        throw PlatformError(ErrorCode::invalid_request, "this agent is not enrolled yet: --join and --control are needed",
                            "Issue a token with `platform host join-token`, then: platform-agent --join TOKEN --control URL");
      if (name.empty()) name = agent::default_host_name();
      auto out = api::Client(control, "").call(
          "POST", "/v1/hosts/enrol",
          Json{{"join_token", join}, {"name", name}, {"report", agent::host_report(state, runtime)}}, std::string());
      id = agent::Identity{out.value("host_id", ""), out.value("name", ""), out.value("credential", ""), control};
      agent::save_identity(state, *id);
      std::cerr << "platform-agent: enrolled as " << id->name << " (" << id->host_id << ")\n";
    }
    if (control.empty())
      throw PlatformError(ErrorCode::invalid_request, "no control-plane URL", "Pass --control URL.");
    api::Client client(control, id->credential);
    std::cerr << "platform-agent: host " << id->name << " (" << id->host_id << ") reporting to " << control << "\n";
    std::thread heartbeats([&] { heartbeat_loop(client, state, runtime); });

    // Reports go through the outbox (written before they are sent, removed once taken).
    agent::Outbox outbox((std::filesystem::path(state) / "outbox").string());
    std::thread reporter([&] { report_loop(client, outbox); });

    agent::ImageStore images((std::filesystem::path(state) / "images").string());
    std::shared_ptr<agent::Runtime> instances;  // none: the host takes no instances (its report says why)
    if (runtime.name == "sandbox") {
      instances = std::make_shared<agent::Sandbox>((std::filesystem::path(state) / "sandbox").string(), self_binary(argv[0]));
    } else if (runtime.name == "microvm") {
      agent::MicroVmRuntime::Options vm;
      vm.state_dir = (std::filesystem::path(state) / "microvm").string();
      vm.shim = self_binary(argv[0]);
      vm.guest = guest;
      vm.kvm = runtime.kvm;
      instances = std::make_shared<agent::MicroVmRuntime>(vm);
    }
    agent::SupervisorDeps deps;
    deps.images = &images;
    deps.runtime = instances.get();
    deps.outbox = &outbox;
    deps.secrets_dir = (std::filesystem::path(state) / "secrets").string();
    deps.fetch_secrets = [&client](const std::string& instance) {
      auto r = client.call("GET", "/v1/agent/instances/" + api::url_encode(instance) + "/secrets");
      auto bytes = base64_decode(r.value("file", ""));
      if (!bytes) throw PlatformError(ErrorCode::internal, "the secrets file of " + instance + " is not base64", "");
      return *bytes;
    };
    deps.drain = [&client](const std::string& instance) {
      return client.call("GET", "/v1/agent/instances/" + api::url_encode(instance) + "/drain", std::nullopt,
                         std::string(), std::chrono::seconds(2));
    };
    deps.ship_logs = [&client](const Json& lines) {
      client.call("POST", "/v1/agent/logs", Json{{"lines", lines}}, std::string(), std::chrono::seconds(10));
    };
    {
      agent::Converger converger(deps);
      auto slot = std::make_shared<WatchSlot>();
      std::thread(watch_loop, std::make_shared<const api::Client>(client), slot).detach();
      // `platform exec`: detached like the watch, whose long poll may outlast the agent's last moments.
      std::thread(agent::serve_exec, std::make_shared<const api::Client>(client), instances, [] { return g_stop != 0; })
          .detach();
      converge_loop(*slot, converger);
      if (stop_on_exit) {
        std::cerr << "platform-agent: stopping this host's instances\n";
        converger.stop_all("the agent stopped (--stop-instances-on-exit)");
      }
    }  // otherwise instances keep running: a restarted agent adopts them
    outbox.wake();
    reporter.join();
    heartbeats.join();
    flush(client, outbox, std::chrono::seconds(3));  // what the last moments reported, while the API is up
    std::cerr << "platform-agent: stopping\n";
    return 0;
  } catch (const PlatformError& e) {
    std::cerr << "platform-agent: error: " << e.error().message << "\n";
    if (!e.error().hint.empty()) std::cerr << "hint: " << e.error().hint << "\n";
    return exit_code(e.error().code);
  } catch (const std::exception& e) {
    std::cerr << "platform-agent: error: " << e.what() << "\n";
    return 1;
  }
}
