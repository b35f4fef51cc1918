#include "agent/sandbox.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "engine/error.h"
#include "engine/exec.h"

namespace platform::agent {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& hint = {}) {
  throw PlatformError(ErrorCode::internal, what, hint);
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// "name" or "uid" -> uid from the image's /etc/passwd (or /etc/group for groups).
std::optional<long> lookup_id(const fs::path& rootfs, const std::string& file, const std::string& name) {
  if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos) return std::stol(name);
  std::ifstream in(rootfs / "etc" / file);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string n, pw, id;
    if (std::getline(fields, n, ':') && std::getline(fields, pw, ':') && std::getline(fields, id, ':') && n == name &&
        !id.empty() && id.find_first_not_of("0123456789") == std::string::npos)
      return std::stol(id);
  }
  return std::nullopt;
}

Json process_json(const InstanceSpec& s) {
  const auto& ic = s.image_config;
  std::vector<std::string> args = s.command;
  if (args.empty()) {
    for (const char* k : {"Entrypoint", "Cmd"})
      if (ic.contains(k) && ic[k].is_array())
        for (const auto& a : ic[k])
          if (a.is_string()) args.push_back(a);
  }
  if (args.empty())
    throw PlatformError(ErrorCode::invalid_request, "instance " + s.id + " has nothing to run",
                        "The image has no Entrypoint or Cmd: give the process a command in platform.toml.");
  std::map<std::string, std::string> env = {{"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}};
  if (ic.contains("Env") && ic["Env"].is_array())
    for (const auto& e : ic["Env"])
      if (e.is_string()) {
        const auto& kv = e.get_ref<const std::string&>();
        if (auto eq = kv.find('='); eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
      }
  for (const auto& [k, v] : s.env) env[k] = v;
  env["PLATFORM_INSTANCE_ID"] = s.id;
  Json envs = Json::array();
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  // User: "user", "user:group", "uid", "uid:gid"; names from the image's /etc/passwd and /etc/group.
  long uid = 0, gid = 0;
  std::string user = ic.value("User", std::string());
  if (!user.empty()) {
    auto colon = user.find(':');
    auto u = lookup_id(s.rootfs, "passwd", user.substr(0, colon));
    if (!u)
      throw PlatformError(ErrorCode::invalid_request, "the image's user \"" + user + "\" is not in its /etc/passwd",
                          "Use a numeric uid in the image's USER, or add the user to the image.");
    uid = *u;
    if (colon != std::string::npos) {
      auto g = lookup_id(s.rootfs, "group", user.substr(colon + 1));
      if (!g)
        throw PlatformError(ErrorCode::invalid_request, "the image's group in \"" + user + "\" is not in its /etc/group",
                            "Use a numeric gid in the image's USER.");
      gid = *g;
    }
  }
  const Json caps = {"CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",   "CAP_FOWNER",           "CAP_MKNOD",
                     "CAP_NET_RAW", "CAP_SETGID",       "CAP_SETUID",   "CAP_SETFCAP",          "CAP_SETPCAP",
                     "CAP_KILL",    "CAP_SYS_CHROOT",   "CAP_AUDIT_WRITE", "CAP_NET_BIND_SERVICE"};
  return {{"terminal", false},
          {"user", {{"uid", uid}, {"gid", gid}}},
          {"args", args},
          {"env", envs},
          {"cwd", ic.value("WorkingDir", std::string()).empty() ? "/" : ic.value("WorkingDir", std::string("/"))},
          {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
          {"noNewPrivileges", true}};
}

Json config_json(const InstanceSpec& s, const fs::path& merged) {
  Json mounts = {
      {{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
      {{"destination", "/dev"}, {"type", "tmpfs"}, {"source", "tmpfs"},
       {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
      {{"destination", "/dev/pts"}, {"type", "devpts"}, {"source", "devpts"},
       {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}}},
      {{"destination", "/dev/shm"}, {"type", "tmpfs"}, {"source", "shm"},
       {"options", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}},
      {{"destination", "/dev/mqueue"}, {"type", "mqueue"}, {"source", "mqueue"}, {"options", {"nosuid", "noexec", "nodev"}}},
      {{"destination", "/sys"}, {"type", "sysfs"}, {"source", "sysfs"}, {"options", {"nosuid", "noexec", "nodev", "ro"}}}};
  if (!s.secrets_file.empty())
    mounts.push_back({{"destination", "/run/platform/secrets"}, {"type", "bind"}, {"source", s.secrets_file},
                      {"options", {"rbind", "ro", "nosuid", "nodev", "noexec"}}});
  const auto limit = s.memory_mib * 1024 * 1024;
  return {{"ociVersion", "1.0.2"},
          {"process", process_json(s)},
          {"root", {{"path", merged.string()}, {"readonly", false}}},
          {"hostname", s.id.substr(0, 63)},
          {"mounts", mounts},
          {"linux",
           {{"namespaces", {{{"type", "pid"}}, {{"type", "network"}}, {{"type", "ipc"}}, {{"type", "uts"}},
                            {{"type", "mount"}}}},
            {"cgroupsPath", "/platform/" + s.id},
            {"resources",
             {{"memory", {{"limit", limit}, {"swap", limit}}},
              {"cpu", {{"quota", static_cast<std::int64_t>(s.cpu * 100000)}, {"period", 100000}}},
              {"pids", {{"limit", 4096}}}}},
            {"maskedPaths", {"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                             "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"}},
            {"readonlyPaths", {"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}}}}};
}

bool valid_id(const std::string& id) {
  return !id.empty() && id.size() <= 128 && id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") == std::string::npos;
}

}  // namespace

std::string ExitStatus::describe() const {
  if (oom) return "killed for running out of memory (OOM)";
  if (signal) return fmt::format("killed by signal {} ({})", signal, ::strsignal(signal));
  return fmt::format("exited with status {}", exit_code);
}

Sandbox::Sandbox(std::string state_dir, std::string runc) : state_dir_(std::move(state_dir)), runc_(std::move(runc)) {
  fs::create_directories(fs::path(state_dir_) / "runc");
  // Container processes are reparented to us when `runc create` exits: we reap them and see their status.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
}

Sandbox::~Sandbox() = default;

std::string Sandbox::probe(const std::string& runc, bool* ok) {
  *ok = false;
  if (::access(runc.c_str(), X_OK) != 0) return "runc is not installed (apt-get install runc)";
  if (::geteuid() != 0) return "the agent is not root (runc needs it for namespaces and cgroups)";
  *ok = true;
  return "runc at " + runc;
}

std::string Sandbox::dir(const std::string& id) const { return (fs::path(state_dir_) / "instances" / id).string(); }
std::string Sandbox::stdout_path(const std::string& id) const { return dir(id) + "/stdout.log"; }
std::string Sandbox::stderr_path(const std::string& id) const { return dir(id) + "/stderr.log"; }

int Sandbox::runc(const std::vector<std::string>& args, const std::string& log, std::chrono::seconds timeout) const {
  pid_t pid = ::fork();
  if (pid == 0) {
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0640);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    std::vector<std::string> argv = {runc_, "--root", (fs::path(state_dir_) / "runc").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    exec_or_exit(argv);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return 124;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void Sandbox::start(const InstanceSpec& spec) {
  if (!valid_id(spec.id))
    throw PlatformError(ErrorCode::invalid_request, "invalid instance id \"" + spec.id.substr(0, 80) + "\"",
                        "Instance ids are lowercase letters, digits, '_' and '-'.");
  const fs::path d = dir(spec.id), merged = d / "rootfs";
  fs::create_directories(d / "upper");
  fs::create_directories(d / "work");
  fs::create_directories(merged);
  // The instance writes to its own upper layer; the image's rootfs stays as pulled.
  const auto opts = "lowerdir=" + spec.rootfs + ",upperdir=" + (d / "upper").string() + ",workdir=" + (d / "work").string();
  if (::mount("overlay", merged.c_str(), "overlay", 0, opts.c_str()) != 0 && errno != EBUSY)
    fail("cannot mount the instance's root filesystem: " + std::string(std::strerror(errno)),
         "The sandbox runtime needs root and overlayfs.");
  {
    std::ofstream cfg(d / "config.json", std::ios::trunc);
    cfg << config_json(spec, merged).dump(2);
  }
  const auto runc_log = (d / "runc.log").string();
  // `runc create` hands its stdout and stderr to the container's process.
  pid_t pid = ::fork();
  if (pid == 0) {
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(stdout_path(spec.id).c_str(), O_WRONLY | O_CREAT | O_APPEND, 0640);
    int err = ::open(stderr_path(spec.id).c_str(), O_WRONLY | O_CREAT | O_APPEND, 0640);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    std::string root = (fs::path(state_dir_) / "runc").string(), bundle = d.string(),
                pidfile = (d / "pid").string(), id = spec.id, log = runc_log;
    ::execl(runc_.c_str(), runc_.c_str(), "--root", root.c_str(), "--log", log.c_str(), "create", "--bundle",
            bundle.c_str(), "--pid-file", pidfile.c_str(), id.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail("runc could not create instance " + spec.id + ": " + slurp(runc_log).substr(0, 2000) +
             slurp(stderr_path(spec.id)).substr(0, 2000),
         "See " + runc_log + ".");
  Running r;
  r.pid = static_cast<pid_t>(std::stol(slurp(d / "pid")));
  r.memory_mib = spec.memory_mib;
  r.cgroup_memory = fs::exists("/sys/fs/cgroup/memory") ? "/sys/fs/cgroup/memory/platform/" + spec.id
                                                         : "/sys/fs/cgroup/platform/" + spec.id;
  if (runc({"start", spec.id}, runc_log, std::chrono::seconds(30)) != 0)
    fail("runc could not start instance " + spec.id + ": " + slurp(runc_log).substr(0, 2000), "See " + runc_log + ".");
  std::lock_guard lock(mu_);
  running_[spec.id] = r;
}

std::optional<ExitStatus> Sandbox::wait(const std::string& id, std::chrono::milliseconds timeout) {
  Running r;
  {
    std::lock_guard lock(mu_);
    auto it = running_.find(id);
    if (it == running_.end()) throw PlatformError(ErrorCode::not_found, "instance " + id + " is not running here");
    r = it->second;
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    pid_t got = ::waitpid(r.pid, &status, WNOHANG);
    if (got == r.pid) break;
    if (got < 0 && errno == ECHILD) {
      status = -1;  // not our child (should not happen with the subreaper): status unknown
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ExitStatus out;
  if (status >= 0 && WIFEXITED(status)) out.exit_code = WEXITSTATUS(status);
  if (status >= 0 && WIFSIGNALED(status)) out.signal = WTERMSIG(status);
  // The OOM counter of its cgroup, read before the container (and its cgroup) is deleted.
  for (const char* file : {"memory.oom_control", "memory.events"}) {
    std::istringstream lines(slurp(fs::path(r.cgroup_memory) / file));
    std::string key;
    long value = 0;
    while (lines >> key >> value)
      if (key == "oom_kill" && value > 0) out.oom = true;
  }
  runc({"delete", "--force", id}, dir(id) + "/runc.log", std::chrono::seconds(30));
  std::lock_guard lock(mu_);
  running_.erase(id);
  return out;
}

ExitStatus Sandbox::stop(const std::string& id, std::chrono::milliseconds grace) {
  const auto log = dir(id) + "/runc.log";
  runc({"kill", id, "TERM"}, log, std::chrono::seconds(10));
  if (auto s = wait(id, grace)) return *s;
  runc({"kill", id, "KILL"}, log, std::chrono::seconds(10));
  if (auto s = wait(id, std::chrono::seconds(10))) return *s;
  fail("instance " + id + " did not die after SIGKILL", "See " + log + ".");
}

void Sandbox::destroy(const std::string& id) {
  if (!valid_id(id)) return;
  ::umount2((fs::path(dir(id)) / "rootfs").c_str(), MNT_DETACH);
  std::error_code ec;
  fs::remove_all(dir(id), ec);
}

}  // namespace platform::agent
