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

// One process of a kind per host: `lock_file` (e.g. <state>/agent.lock), locked (flock) for the process's
// life and holding its pid. A second platform-agent on one state folder would run the host's instances
// twice; a second platform-edge for one host would fight the first over its listeners and reports. The
// second is refused (precondition_failed, naming the first one's pid and the file, with `hint`). The
// lock is not inherited by children (the agent's shims outlive it), so a restart takes it again.
class ProcessLock {
 public:
  ProcessLock(const std::string& lock_file, const std::string& who, const std::string& hint);
  ~ProcessLock();
  ProcessLock(const ProcessLock&) = delete;
  ProcessLock& operator=(const ProcessLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace platform::agent
