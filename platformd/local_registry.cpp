#include "platformd/local_registry.h"

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "api/client.h"
#include "engine/error.h"
#include "platformd/child.h"

namespace platform::dev {
namespace fs = std::filesystem;

namespace {
constexpr const char* kBinary = "/usr/bin/docker-registry";

// Up: GET /v2/ answers 200, or 401 when the registry wants a token.
bool answers(const std::string& url, bool auth) {
  try {
    auto status = api::Client(url, "").request("GET", "/v2/").status;
    return status == 200 || (auth && status == 401);
  } catch (const std::exception&) {
    return false;
  }
}
}  // namespace

LocalRegistry::LocalRegistry(LocalRegistryOptions options) : options_(std::move(options)) {}

LocalRegistry::~LocalRegistry() {
  try {
    stop();
  } catch (...) {
  }
}

std::string LocalRegistry::address() const { return "127.0.0.1:" + std::to_string(options_.port); }
std::string LocalRegistry::log_file() const { return (fs::path(options_.dir) / "registry.log").string(); }

void LocalRegistry::start() {
  if (!fs::exists(kBinary))
    throw PlatformError(ErrorCode::unavailable, std::string(kBinary) + " is not installed",
                        "Install it: apt-get install docker-registry (scripts/setup does it).");
  fs::create_directories(fs::path(options_.dir) / "data");
  // Debian's packaged config turns on htpasswd auth and answers 401 to everything: never use it.
  auto config = fs::path(options_.dir) / "config.yml";
  std::ofstream(config, std::ios::trunc) << "# Written by platformd dev on every start; edits are replaced.\n"
                                         << "version: 0.1\n"
                                         << "log:\n  level: warn\n"
                                         << "storage:\n  filesystem:\n    rootdirectory: "
                                         << (fs::path(options_.dir) / "data").string() << "\n"
                                         << "  delete:\n    enabled: true\n"
                                         << "http:\n  addr: " << address() << "\n"
                                         << options_.auth_config;
  pid_ = spawn({kBinary, "serve", config.string()}, {log_file(), false, SIGTERM});
  const auto url = "http://" + address();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!answers(url, !options_.auth_config.empty())) {
    if (!alive())
      throw PlatformError(ErrorCode::unavailable, "the OCI registry exited during start-up:\n" + tail_of(log_file()),
                          "See " + log_file() + " (is port " + std::to_string(options_.port) + " taken?).");
    if (std::chrono::steady_clock::now() > deadline) {
      stop();
      throw PlatformError(ErrorCode::unavailable, "the OCI registry did not answer on " + url + " within 30 s",
                          "See " + log_file() + ".");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

bool LocalRegistry::alive() { return child_running(pid_); }

void LocalRegistry::stop() { stop_child(pid_, SIGTERM, std::chrono::seconds(5)); }

}  // namespace platform::dev
