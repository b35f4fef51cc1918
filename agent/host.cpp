#include "agent/host.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/sandbox.h"
#include "engine/error.h"

namespace platform::agent {
namespace fs = std::filesystem;

std::optional<Identity> load_identity(const std::string& state_dir) {
  const auto path = fs::path(state_dir) / "host.json";
  if (!fs::exists(path)) return std::nullopt;
  std::ifstream in(path);
  auto j = Json::parse(in, nullptr, false);
  if (!j.is_object() || !j.contains("host_id") || !j.contains("credential"))
    throw PlatformError(ErrorCode::invalid_request, path.string() + " is not a host identity file",
                        "Move it away and enrol again with a new join token.");
  return Identity{j.value("host_id", ""), j.value("name", ""), j.value("credential", ""), j.value("control", "")};
}

void save_identity(const std::string& state_dir, const Identity& id) {
  fs::create_directories(state_dir);
  const auto path = fs::path(state_dir) / "host.json", tmp = fs::path(state_dir) / "host.json.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    fs::permissions(tmp, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
    out << Json{{"host_id", id.host_id}, {"name", id.name}, {"credential", id.credential}, {"control", id.control}}
               .dump(2)
        << "\n";
    if (!out) throw PlatformError(ErrorCode::internal, "cannot write " + tmp.string(), "Check the state folder.");
  }
  fs::rename(tmp, path);
}

namespace {

std::int64_t mem_total_mib() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemTotal:") return kib / 1024;
  return 0;
}

// /dev/kvm can exist without running guests (nested virtualisation without vmx/svm exposed: QEMU
// with -enable-kvm then spins and never boots, DESIGN.md section 13). KVM counts only when the CPU
// flags say hardware virtualisation is there too.
bool kvm_runs_guests(std::string& why) {
  if (::access("/dev/kvm", R_OK | W_OK) != 0) {
    why = "/dev/kvm not usable";
    return false;
  }
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("flags", 0) == 0) {
      std::istringstream words(line);
      for (std::string w; words >> w;)
        if (w == "vmx" || w == "svm") {
          why = "/dev/kvm usable (" + w + ")";
          return true;
        }
      break;
    }
  why = "/dev/kvm present but the CPU shows no vmx/svm (nested virtualisation cannot run guests; TCG instead)";
  return false;
}

std::string first_existing(std::initializer_list<const char*> paths) {
  for (const char* p : paths)
    if (::access(p, X_OK) == 0) return p;
  return "";
}

// The runtime this agent runs instances with, and why that one.
Json runtime_json(const std::string& runc, const std::string& found, Json detected) {
  bool sandbox_ok = false;
  const auto sandbox_why = runc.empty() ? std::string("runc is not installed") : Sandbox::probe(runc, &sandbox_ok);
  if (sandbox_ok)
    return {{"name", "sandbox"},
            {"reason", "runc containers (" + sandbox_why + "); microVMs boot (agent/microvm.h) but the agent does not "
                       "run instances in them yet, and a sandbox shares the host kernel (weaker isolation than a "
                       "microVM); found: " + found},
            {"detected", std::move(detected)}};
  return {{"name", "none"},
          {"reason", "no runtime can run instances here: " + sandbox_why + "; found: " + found},
          {"detected", std::move(detected)}};
}

}  // namespace

Json host_report(const std::string& state_dir) {
  struct statvfs fsinfo {};
  std::int64_t disk_mib = 0;
  if (::statvfs(state_dir.c_str(), &fsinfo) == 0)
    disk_mib = static_cast<std::int64_t>(fsinfo.f_bavail) * static_cast<std::int64_t>(fsinfo.f_frsize) / (1024 * 1024);
  const auto runc = first_existing({"/usr/sbin/runc", "/usr/bin/runc"});
  const auto qemu = first_existing({"/usr/bin/qemu-system-x86_64"});
  std::string kvm_why;
  const bool kvm = kvm_runs_guests(kvm_why);
  std::ostringstream found;
  found << "runc " << (runc.empty() ? "not installed" : "at " + runc) << "; qemu-system-x86_64 "
        << (qemu.empty() ? "not installed" : "at " + qemu) << "; " << kvm_why;
  return {{"capacity",
           {{"cpus", static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN))},
            {"memory_mib", mem_total_mib()},
            {"disk_mib", disk_mib}}},
          {"runtime", runtime_json(runc, found.str(), {{"runc", runc}, {"qemu", qemu}, {"kvm", kvm}})},
          {"agent_version", "0.1.0"}};
}

std::string default_host_name() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  std::string out;
  for (char c : std::string(buf)) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) out.push_back(c);
    else if (!out.empty() && out.back() != '-') out.push_back('-');
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  if (out.empty() || !(out[0] >= 'a' && out[0] <= 'z')) out = "host-" + out;
  return out.substr(0, 63);
}

}  // namespace platform::agent
