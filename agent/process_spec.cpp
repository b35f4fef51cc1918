#include "agent/process_spec.h"

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "agent/runtime.h"
#include "engine/error.h"

namespace platform::agent {
namespace fs = std::filesystem;

namespace {

bool numeric(const std::string& s) {
  return !s.empty() && s.size() < 10 && s.find_first_not_of("0123456789") == std::string::npos;
}

// A line of the image's /etc/passwd or /etc/group whose name (or numeric id) is `key`: {id, primary gid}
// (the gid only in /etc/passwd).
struct Entry {
  unsigned id = 0, gid = 0;
  bool has_gid = false;
};
std::optional<Entry> lookup(const fs::path& rootfs, const std::string& file, const std::string& key) {
  std::ifstream in(rootfs / "etc" / file);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string name, pw, id, gid;
    if (!std::getline(fields, name, ':') || !std::getline(fields, pw, ':') || !std::getline(fields, id, ':') || !numeric(id))
      continue;
    if (name != key && id != key) continue;
    Entry e{static_cast<unsigned>(std::stoul(id)), 0, false};
    if (std::getline(fields, gid, ':') && numeric(gid)) e = {e.id, static_cast<unsigned>(std::stoul(gid)), true};
    return e;
  }
  if (numeric(key)) return Entry{static_cast<unsigned>(std::stoul(key)), 0, false};
  return std::nullopt;
}

}  // namespace

ProcessSpec resolve_process(const InstanceSpec& s) {
  const auto& ic = s.image_config;
  ProcessSpec p;
  p.argv = s.command;
  if (p.argv.empty()) {
    for (const char* k : {"Entrypoint", "Cmd"})
      if (ic.contains(k) && ic[k].is_array())
        for (const auto& a : ic[k])
          if (a.is_string()) p.argv.push_back(a);
  }
  if (p.argv.empty())
    throw PlatformError(ErrorCode::invalid_request, "instance " + s.id + " has nothing to run",
                        "The image has no Entrypoint or Cmd: give the process a command in platform.toml.");
  p.env = {{"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}};
  if (ic.contains("Env") && ic["Env"].is_array())
    for (const auto& e : ic["Env"])
      if (e.is_string()) {
        const auto& kv = e.get_ref<const std::string&>();
        if (auto eq = kv.find('='); eq != std::string::npos) p.env[kv.substr(0, eq)] = kv.substr(eq + 1);
      }
  for (const auto& [k, v] : s.env) p.env[k] = v;
  p.env["PLATFORM_INSTANCE_ID"] = s.id;
  const std::string workdir = ic.contains("WorkingDir") && ic["WorkingDir"].is_string() ? ic["WorkingDir"].get<std::string>() : "";
  p.workdir = workdir.empty() ? "/" : workdir;
  // User: "user", "user:group", "uid", "uid:gid"; names from the image's /etc/passwd and /etc/group.
  const std::string user = ic.contains("User") && ic["User"].is_string() ? ic["User"].get<std::string>() : "";
  if (!user.empty()) {
    auto colon = user.find(':');
    auto u = lookup(s.rootfs, "passwd", user.substr(0, colon));
    if (!u)
      throw PlatformError(ErrorCode::invalid_request, "the image's user \"" + user + "\" is not in its /etc/passwd",
                          "Use a numeric uid in the image's USER, or add the user to the image.");
    p.uid = u->id;
    p.gid = u->gid;  // the user's primary group, as Docker does, unless USER names one
    if (colon != std::string::npos) {
      auto g = lookup(s.rootfs, "group", user.substr(colon + 1));
      if (!g)
        throw PlatformError(ErrorCode::invalid_request, "the image's group in \"" + user + "\" is not in its /etc/group",
                            "Use a numeric gid in the image's USER.");
      p.gid = g->id;
    }
  }
  return p;
}

}  // namespace platform::agent
