#include "agent/identity.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "engine/error.h"
#include "engine/json.h"

namespace platform::agent {
namespace fs = std::filesystem;

std::optional<Identity> load_identity(const std::string& state_dir) {
  return load_identity_file((fs::path(state_dir) / "host.json").string());
}

std::optional<Identity> load_identity_file(const std::string& file) {
  const fs::path path = file;
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

ProcessLock::ProcessLock(const std::string& lock_file, const std::string& who, const std::string& hint) {
  fd_ = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);  // CLOEXEC: never held by a child
  if (fd_ < 0)
    throw PlatformError(ErrorCode::internal, "cannot open " + lock_file + ": " + std::strerror(errno),
                        "Check the folder and its permissions.");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    const auto n = ::pread(fd_, buf, sizeof buf - 1, 0);
    std::string pid = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    ::close(fd_);
    fd_ = -1;
    throw PlatformError(ErrorCode::precondition_failed,
                        "another " + who + (pid.empty() ? std::string() : " (pid " + pid + ")") +
                            " already runs here: it holds " + lock_file,
                        hint);
  }
  const auto pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
    // The pid is only for the message above; the lock is what counts.
  }
}

ProcessLock::~ProcessLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace platform::agent
