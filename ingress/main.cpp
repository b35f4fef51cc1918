// platform-edge: the L4 edge (docs/edge.md). Serves a config snapshot: explicit TCP endpoints and the
// shared TLS listener routed by server name, with PROXY v2 where a backend opted in. The snapshot comes
// from the control plane (--control: a long poll of GET /v1/edge/config with the host's credential) or
// from a file (--config, checked twice a second); every change is applied live, and one that does not
// validate or cannot be bound is reported while the last good one keeps serving.
#include <CLI/CLI.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "agent/identity.h"
#include "api/client.h"
#include "engine/error.h"
#include "engine/version.h"
#include "ingress/edge.h"

using namespace platform;

namespace {
volatile std::sig_atomic_t g_stop = 0;
constexpr int kRetrySeconds = 2;  // how often a listener that could not be bound is tried again
extern "C" void on_signal(int) { g_stop = 1; }

std::optional<ingress::Address> parse_address(const std::string& s) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  auto ip = s.substr(0, colon);
  if (ip.size() > 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  const auto port = s.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  const int p = std::stoi(port);
  if (p < 1 || p > 65535) return std::nullopt;
  return ingress::Address{ip, static_cast<std::uint16_t>(p)};
}

std::string unbound_text(const std::vector<ingress::Edge::Unbound>& unbound) {
  std::string out;
  for (const auto& u : unbound)
    out += (out.empty() ? "" : "; ") + std::string(u.tls ? "tls " : "tcp ") + u.address.str() + ": " + u.error;
  return out;
}

// Applies a snapshot; when it is refused, why (also on stderr), the last good one still serving. A
// listener that cannot be bound does not refuse the snapshot: it is said here and retried.
std::optional<std::string> apply(ingress::Edge& edge, const Json& j, bool first) {
  try {
    auto cfg = ingress::parse_edge_config(j);
    auto r = edge.apply(cfg);
    std::cerr << "platform-edge: serving config version " << cfg->version << " (" << r.opened << " listeners opened, "
              << r.closed << " closed, " << r.kept << " kept)\n";
    if (!r.unbound.empty())
      std::cerr << "platform-edge: not listening (retried every " << kRetrySeconds << " s): " << unbound_text(r.unbound)
                << "\n";
    return std::nullopt;
  } catch (const std::exception& e) {
    if (first) throw;
    std::cerr << "platform-edge: config not applied, still serving version " << edge.current()->version << ": "
              << e.what() << "\n";
    return e.what();
  }
}

// Binds what could not be bound before; says what changed.
void retry_unbound(ingress::Edge& edge) {
  if (edge.unbound().empty()) return;
  if (int n = edge.retry_unbound(); n > 0) {
    const auto left = edge.unbound();
    std::cerr << "platform-edge: " << n << " more listener(s) bound"
              << (left.empty() ? std::string(", every listener of the snapshot is up") : "; still not: " + unbound_text(left))
              << "\n";
  }
}

void serve_file(ingress::Edge& edge, const std::string& config_path) {
  std::filesystem::file_time_type seen{};
  std::uintmax_t seen_size = 0;
  bool first = true;
  unsigned ticks = 0;
  while (!g_stop) {
    std::error_code ec;
    const auto mtime = std::filesystem::last_write_time(config_path, ec);
    const auto size = ec ? 0 : std::filesystem::file_size(config_path, ec);
    if (ec && first) throw PlatformError(ErrorCode::not_found, "cannot read " + config_path + ": " + ec.message(), "");
    if (!ec && (first || mtime != seen || size != seen_size)) {
      seen = mtime;
      seen_size = size;
      std::ifstream in(config_path);
      std::stringstream text;
      text << in.rdbuf();
      try {
        if (!apply(edge, Json::parse(text.str()), first)) edge.probe_new_backends(std::chrono::seconds(1));
      } catch (const Json::exception& e) {
        if (first) throw PlatformError(ErrorCode::invalid_request, config_path + " is not JSON: " + e.what(), "");
        std::cerr << "platform-edge: " << config_path << " is not JSON, still serving the last good config\n";
      }
      first = false;
    }
    if (++ticks % (kRetrySeconds * 2) == 0) retry_unbound(edge);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

// The host's credential from the agent's identity file (host.json); waits while the agent enrols.
std::string host_credential(const std::string& identity_file) {
  for (bool said = false; !g_stop; std::this_thread::sleep_for(std::chrono::milliseconds(500))) {
    if (auto id = agent::load_identity_file(identity_file)) return id->credential;
    if (!said) std::cerr << "platform-edge: waiting for " << identity_file << " (the agent enrols this host)\n";
    said = true;
  }
  return {};
}

// What the edge serves, for the control plane (POST /v1/edge/status): `platform exposure` shows it.
// `version`: the snapshot applied and its new backends probed; `refused`: the newest snapshot it could
// not apply and why, or null.
Json status_json(const ingress::Edge& edge, std::int64_t version, const Json& refused) {
  Json unbound = Json::array();
  for (const auto& u : edge.unbound())
    unbound.push_back({{"address", u.address.ip}, {"port", u.address.port}, {"kind", u.tls ? "tls" : "tcp"},
                       {"error", u.error}});
  Json unreachable = Json::array();
  for (const auto& u : edge.unreachable())
    unreachable.push_back({{"target", u.target}, {"address", u.backend.ip}, {"port", u.backend.port},
                           {"error", u.error}, {"failures", u.failures}});
  Json out = {{"version", version}, {"unbound", unbound}, {"unreachable", unreachable},
              {"build", {{"version", build_info().version}, {"commit", build_info().commit}}}};
  if (!refused.is_null()) out["refused"] = refused;
  return out;
}

// What the control loop has settled, for the reporter.
struct Settled {
  std::mutex mu;
  bool polled = false;       // the control plane has a snapshot on record for this host to report against
  std::int64_t version = 0;  // applied, and the backends it brought probed
  Json refused;              // the newest snapshot not applied: {version, error}
};

// Reports what the edge serves after each change (a snapshot settled, a listener bound at last, a
// snapshot refused, a backend that starts or stops refusing the edge), checked every 200 ms, and about
// once a minute anyway (the control plane may have lost or mixed it up). Never in the way of the
// config: a report that fails is said once and sent again next turn.
// Backends that refuse the edge are tried again every 5 s, so one that listens now is cleared.
void report_status(ingress::Edge& edge, api::Client client, Settled& settled) {
  Json reported;
  std::chrono::steady_clock::time_point reported_at{}, probed_at = std::chrono::steady_clock::now();
  bool failed = false;
  while (!g_stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (std::chrono::steady_clock::now() - probed_at > std::chrono::seconds(5)) {
      edge.probe_unreachable(std::chrono::seconds(1));
      probed_at = std::chrono::steady_clock::now();
    }
    Json status;
    {
      std::lock_guard lock(settled.mu);
      if (!settled.polled) continue;
      status = status_json(edge, settled.version, settled.refused);
    }
    const auto now = std::chrono::steady_clock::now();
    if (status == reported && now - reported_at < std::chrono::minutes(1)) continue;
    try {
      client.call("POST", "/v1/edge/status", status, std::string(), std::chrono::seconds(10));
      reported = status;
      reported_at = now;
      failed = false;
    } catch (const std::exception& e) {
      if (!failed) std::cerr << "platform-edge: cannot report what it serves: " << e.what() << "\n";
      failed = true;
    }
  }
}

// Long-polls the control plane for new snapshot versions; errors are retried with a growing pause while
// the last good snapshot keeps serving. Each snapshot applied has its new backends probed (at most 1 s)
// before the reporter may say it is served. While a listener is not bound, it is retried every
// kRetrySeconds (the poll waits no longer than that).
void serve_control(ingress::Edge& edge, const std::string& url, const std::string& identity_file) {
  const auto credential = host_credential(identity_file);
  if (g_stop) return;
  api::Client client(url, credential);
  Settled settled;
  std::thread([&edge, reporter = api::Client(url, credential), &settled]() mutable {
    report_status(edge, std::move(reporter), settled);
  }).detach();  // like this loop, stopped by the process's exit
  std::int64_t version = -1;
  int failures = 0;
  while (!g_stop) {
    try {
      retry_unbound(edge);
      const auto wait = edge.unbound().empty() ? 20 : kRetrySeconds;
      auto j = client.call("GET", "/v1/edge/config?wait=" + std::to_string(wait) + "s" +
                                      (version >= 0 ? "&after=" + std::to_string(version) : ""),
                           std::nullopt, std::string(), std::chrono::seconds(wait + 10));
      if (failures) std::cerr << "platform-edge: the control plane answers again\n";
      failures = 0;
      const auto v = j.value("version", std::int64_t{-1});
      if (v != version) {
        if (auto why = apply(edge, j, false)) {
          {
            std::lock_guard lock(settled.mu);
            settled.refused = {{"version", v}, {"error", utf8_prefix(*why, 300)}};
            settled.polled = true;
          }
          std::this_thread::sleep_for(std::chrono::seconds(1));  // ask again shortly
          continue;
        }
        version = v;
        edge.probe_new_backends(std::chrono::seconds(1));
        std::lock_guard lock(settled.mu);
        settled.refused = nullptr;
      }
      std::lock_guard lock(settled.mu);
      settled.version = edge.current()->version;
      settled.polled = true;
    } catch (const std::exception& e) {
      if (!failures) std::cerr << "platform-edge: cannot reach the control plane at " << url << ": " << e.what()
                               << " (retrying; serving the last good config)\n";
      ++failures;
      for (int i = 0; i < std::min(50, 5 * failures) && !g_stop; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"platform-edge: the L4 edge (docs/edge.md)"};
  app.set_version_flag("--version", "platform-edge " + version_line());
  api::set_client_program("platform-edge");
  std::string config_path, metrics, control, identity;
  int threads = 1;
  auto* file_opt =
      app.add_option("--config", config_path, "The config snapshot (JSON), applied again whenever the file changes");
  auto* control_opt = app.add_option("--control", control, "The control plane's URL: long-poll the config from it");
  app.add_option("--host-identity", identity, "With --control: platform-agent's host.json, whose credential the edge uses");
  file_opt->excludes(control_opt);
  app.add_option("--metrics", metrics, "Serve GET /metrics on ADDRESS:PORT, e.g. 127.0.0.1:9100");
  app.add_option("--threads", threads, "I/O threads")->check(CLI::Range(1, 64))->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    std::optional<agent::ProcessLock> one_edge;
    if (!control.empty() && !identity.empty()) {  // one edge per host: the folder of the host's identity
      const auto folder = std::filesystem::path(identity).parent_path();
      if (!folder.empty()) std::filesystem::create_directories(folder);
      one_edge.emplace((folder / "edge.lock").string(), "platform-edge",
                       "A host runs one edge: stop that one first (two would fight over its listeners and its "
                       "reports to the control plane).");
    }
    ingress::Edge edge(threads);
    if (!metrics.empty()) {
      auto a = parse_address(metrics);
      if (!a) throw PlatformError(ErrorCode::invalid_request, "--metrics \"" + metrics + "\" is not ADDRESS:PORT", "e.g. 127.0.0.1:9100");
      edge.serve_metrics(*a);
    }
    if (!control.empty()) {
      if (identity.empty())
        throw PlatformError(ErrorCode::invalid_request, "--control needs --host-identity",
                            "Give the host.json of platform-agent's state folder, e.g. --host-identity /var/lib/platform/agent/host.json");
      // The long poll runs beside; a stop does not wait for it to come back (the listeners close with the process).
      std::thread([&edge, control, identity] {
        try {
          serve_control(edge, control, identity);
        } catch (const PlatformError& e) {
          std::cerr << "platform-edge: error: " << e.error().message << "\nhint: " << e.error().hint << "\n";
          std::_Exit(exit_code(e.error().code));
        }
      }).detach();
      while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::cerr << "platform-edge: stopping\n";
      std::_Exit(0);
    }
    if (config_path.empty())
      throw PlatformError(ErrorCode::invalid_request, "give --control URL (with --host-identity) or --config FILE", "");
    serve_file(edge, config_path);
    std::cerr << "platform-edge: stopping\n";
    return 0;
  } catch (const PlatformError& e) {
    std::cerr << "platform-edge: error: " << e.error().message << "\n";
    if (!e.error().hint.empty()) std::cerr << "hint: " << e.error().hint << "\n";
    return exit_code(e.error().code);
  } catch (const std::exception& e) {
    std::cerr << "platform-edge: error: " << e.what() << "\n";
    return 1;
  }
}
