// platform-edge: the L4 edge (docs/edge.md). Serves a config snapshot: explicit TCP endpoints and the
// shared TLS listener routed by server name, with PROXY v2 where a backend opted in. For now it reads
// the snapshot from a file and applies every change to it live (checked twice a second); a snapshot
// that does not validate or cannot be bound is reported and the last good one keeps serving.
#include <CLI/CLI.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "engine/error.h"
#include "ingress/edge.h"

using namespace platform;

namespace {
volatile std::sig_atomic_t g_stop = 0;
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
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"platform-edge: the L4 edge (docs/edge.md)"};
  std::string config_path, metrics;
  int threads = 1;
  app.add_option("--config", config_path, "The config snapshot (JSON), applied again whenever the file changes")->required();
  app.add_option("--metrics", metrics, "Serve GET /metrics on ADDRESS:PORT, e.g. 127.0.0.1:9100");
  app.add_option("--threads", threads, "I/O threads")->check(CLI::Range(1, 64))->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    ingress::Edge edge(threads);
    if (!metrics.empty()) {
      auto a = parse_address(metrics);
      if (!a) throw PlatformError(ErrorCode::invalid_request, "--metrics \"" + metrics + "\" is not ADDRESS:PORT", "e.g. 127.0.0.1:9100");
      edge.serve_metrics(*a);
    }
    std::filesystem::file_time_type seen{};
    std::uintmax_t seen_size = 0;
    bool first = true;
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
          auto cfg = ingress::parse_edge_config(Json::parse(text.str()));
          auto r = edge.apply(cfg);
          std::cerr << "platform-edge: serving config version " << cfg->version << " (" << r.opened << " listeners opened, "
                    << r.closed << " closed, " << r.kept << " kept)\n";
        } catch (const std::exception& e) {
          if (first) throw;
          std::cerr << "platform-edge: config not applied, still serving version " << edge.current()->version << ": "
                    << e.what() << "\n";
        }
        first = false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
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
