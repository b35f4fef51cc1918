#pragma once
// A host's identity: what platform-agent keeps in its state folder after enrolment (host.json, mode
// 0600), so a restart needs no join token, and what platform-edge on the same host authenticates with.
#include <optional>
#include <string>

namespace platform::agent {

struct Identity {
  std::string host_id, name, credential, control;
};

// <state>/host.json; nullopt when the agent never enrolled. Throws invalid_request when the file is not
// an identity.
std::optional<Identity> load_identity(const std::string& state_dir);
// The same, from the file's path.
std::optional<Identity> load_identity_file(const std::string& path);
void save_identity(const std::string& state_dir, const Identity& id);

// The state folder belongs to one running agent: <state>/agent.lock, locked (flock) for the agent's life
// and holding its pid. A second agent on the same folder would run the host's instances twice; it is
// refused (precondition_failed, naming the first one's pid). The lock is not inherited by the shims,
// which outlive the agent, so a restarted agent takes it again.
class StateFolderLock {
 public:
  explicit StateFolderLock(const std::string& state_dir);
  ~StateFolderLock();
  StateFolderLock(const StateFolderLock&) = delete;
  StateFolderLock& operator=(const StateFolderLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace platform::agent
