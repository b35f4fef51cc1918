#include "agent/run_network.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <vector>

#include "engine/crypto.h"
#include "engine/error.h"
#include "engine/exec.h"

namespace platform::agent {
namespace {

constexpr const char* kHostLink = "169.254.0.1";

std::string ip_binary() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
    if (::access(p, X_OK) == 0) return p;
  throw PlatformError(ErrorCode::internal, "iproute2's ip command is not installed",
                      "apt-get install iproute2 (scripts/setup installs it).");
}

// Runs `ip ARGS`; its stderr on failure.
bool ip(const std::vector<std::string>& args, std::string* error) {
  std::vector<std::string> argv = {ip_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return *error = "pipe failed", false;
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(fds[1], 2);
    exec_or_exit(argv);
  }
  ::close(fds[1]);
  std::string out;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  std::string cmd = "ip";
  for (const auto& a : args) cmd += " " + a;
  *error = cmd + ": " + (out.empty() ? "failed" : out);
  return false;
}

std::string name_of(const std::string& run_id) { return "plr-" + sha256_hex(run_id).substr(0, 10); }

// Whether the run has a namespace of its own (made by create_run_network).
bool has_run_network(const std::string& run_id) { return std::filesystem::exists("/run/netns/" + name_of(run_id)); }

}  // namespace

std::string create_run_network(const std::string& run_id, const std::string& address, RunNetworkKind kind) {
  const auto ns = name_of(run_id);
  const auto tag = sha256_hex(run_id).substr(0, 10);
  const auto host_side = "plh" + tag, run_side = "plc" + tag;  // at most 15 characters
  const std::string inner = kind == RunNetworkKind::holds_address ? "eth0" : kRunUplink;
  destroy_run_network(run_id);  // what a failed earlier attempt left
  std::vector<std::vector<std::string>> steps = {
      {"netns", "add", ns},
      {"link", "add", host_side, "type", "veth", "peer", "name", run_side},
      {"link", "set", run_side, "netns", ns},
      {"-n", ns, "link", "set", run_side, "name", inner},
      {"-n", ns, "link", "set", "lo", "up"}};
  if (kind == RunNetworkKind::holds_address) steps.push_back({"-n", ns, "addr", "add", address + "/32", "dev", inner});
  const std::vector<std::vector<std::string>> rest = {
      {"-n", ns, "link", "set", inner, "up"},
      {"-n", ns, "route", "add", kHostLink, "dev", inner, "scope", "link"},
      {"-n", ns, "route", "add", "default", "via", kHostLink, "dev", inner},
      {"addr", "add", std::string(kHostLink) + "/32", "dev", host_side, "scope", "link"},
      {"link", "set", host_side, "up"},
      // replace: a newer run of the same instance takes the address over from one still being removed
      {"route", "replace", address + "/32", "dev", host_side}};
  steps.insert(steps.end(), rest.begin(), rest.end());
  for (const auto& step : steps) {
    std::string error;
    if (!ip(step, &error)) {
      destroy_run_network(run_id);
      std::string leftover;
      ip({"link", "del", host_side}, &leftover);
      throw PlatformError(ErrorCode::internal, "cannot give run " + run_id + " its network: " + error,
                          "Runs with an address need root and iproute2 (ip).");
    }
  }
  return "/run/netns/" + ns;
}

void destroy_run_network(const std::string& run_id) {
  if (!has_run_network(run_id)) return;
  std::string error;
  ip({"netns", "del", name_of(run_id)}, &error);
}

}  // namespace platform::agent
