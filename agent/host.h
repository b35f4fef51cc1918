#pragma once
// What platform-agent knows about its host: its identity (kept in the state folder after enrolment, so
// a restart needs no join token) and its report (capacity, and which runtime it can offer and why).
#include <optional>
#include <string>

#include "engine/json.h"

namespace platform::agent {

struct Identity {
  std::string host_id, name, credential, control;
};

// <state>/host.json (mode 0600); nullopt when the agent never enrolled.
std::optional<Identity> load_identity(const std::string& state_dir);
void save_identity(const std::string& state_dir, const Identity& id);

// {"capacity": {"cpus", "memory_mib", "disk_mib"}, "runtime": {"name", "reason", "detected": {...}},
//  "agent_version"}. The runtime is "none" until this agent has a driver that can run instances.
Json host_report(const std::string& state_dir);

// The machine's host name as a platform name (lowercase, [a-z0-9-], at most 63 characters).
std::string default_host_name();

}  // namespace platform::agent
