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

}  // namespace platform::agent
