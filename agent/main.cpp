// platform-agent: enrols once with a join token, keeps its credential in its state folder, and sends a
// heartbeat with its report (capacity, runtime and why) until SIGINT or SIGTERM. See docs/hosts.md.
#include <CLI/CLI.hpp>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <thread>

#include "agent/host.h"
#include "agent/shim.h"
#include "api/client.h"
#include "engine/error.h"

using namespace platform;

namespace {
volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_signal(int) { g_stop = 1; }

// Sleeps up to `d`, waking early for a stop signal.
void sleep_for(std::chrono::milliseconds d) {
  for (auto end = std::chrono::steady_clock::now() + d; !g_stop && std::chrono::steady_clock::now() < end;)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"platform-agent: runs a host's share of the platform (docs/hosts.md)"};
  std::string join, control, state = "/var/lib/platform-agent", name;
  app.add_option("--join", join, "Join token from `platform host join-token` (first start only)");
  app.add_option("--control", control, "Control-plane API URL, e.g. http://127.0.0.1:7070");
  app.add_option("--state", state, "State folder (identity, images)")->capture_default_str();
  app.add_option("--name", name, "Host name at enrolment (default: the machine's host name)");
  // `platform-agent shim ...`: one instance's shim (agent/shim.h), started by the sandbox runtime.
  agent::ShimOptions shim;
  auto* shim_cmd = app.add_subcommand("shim", "Internal: supervise one sandbox instance (started by the agent)");
  shim_cmd->add_option("--dir", shim.dir)->required();
  shim_cmd->add_option("--id", shim.id)->required();
  shim_cmd->add_option("--runc", shim.runc)->required();
  shim_cmd->add_option("--root", shim.root)->required();
  shim_cmd->group("");
  CLI11_PARSE(app, argc, argv);
  if (*shim_cmd) return agent::run_shim(shim);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  try {
    std::filesystem::create_directories(state);
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
          Json{{"join_token", join}, {"name", name}, {"report", agent::host_report(state)}}, std::string());
      id = agent::Identity{out.value("host_id", ""), out.value("name", ""), out.value("credential", ""), control};
      agent::save_identity(state, *id);
      std::cerr << "platform-agent: enrolled as " << id->name << " (" << id->host_id << ")\n";
    }
    if (control.empty())
      throw PlatformError(ErrorCode::invalid_request, "no control-plane URL", "Pass --control URL.");
    api::Client client(control, id->credential);
    std::chrono::milliseconds interval{5000};
    bool reported_failure = false;
    std::cerr << "platform-agent: host " << id->name << " (" << id->host_id << ") sending heartbeats to " << control
              << "\n";
    while (!g_stop) {
      try {
        auto r = client.call("POST", "/v1/hosts/heartbeat", Json{{"report", agent::host_report(state)}}, std::string(),
                             std::chrono::seconds(10));
        interval = std::chrono::milliseconds(std::clamp<std::int64_t>(r.value("heartbeat_interval_ms", 5000), 200, 60000));
        if (reported_failure || r.value("previous_state", "up") == "down")
          std::cerr << "platform-agent: heartbeats accepted again\n";
        reported_failure = false;
      } catch (const PlatformError& e) {
        if (e.error().code == ErrorCode::unauthenticated) throw;  // the credential is gone: no retry helps
        if (!reported_failure) std::cerr << "platform-agent: heartbeat failed: " << e.what() << " (retrying)\n";
        reported_failure = true;
      }
      sleep_for(interval);
    }
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
