#pragma once
// What platform-agent knows about its host: its identity (kept in the state folder after enrolment, so
// a restart needs no join token) and its report (capacity, and which runtime it can offer and why).
#include <optional>
#include <string>

#include "agent/identity.h"
#include "engine/json.h"

namespace platform::agent {

// The runtime this agent runs instances with, chosen once at start, and why that one.
struct RuntimeChoice {
  std::string name;    // "microvm", "sandbox" or "none"
  std::string reason;  // in words, with what was found
  bool kvm = false;    // microvm: KVM really runs guests here (else TCG)
  Json detected = Json::object();
};
// `wanted`: "auto" (microvm where KVM runs guests; else the sandbox; else microvm under TCG), "microvm"
// or "sandbox" (that one, or "none" saying why it cannot run here). `guest` is the microVM guest kit.
struct GuestKit;
RuntimeChoice choose_runtime(const std::string& wanted, const GuestKit& guest);

// {"capacity": {"cpus", "memory_mib", "disk_mib"}, "runtime": {"name", "reason", "detected": {...}},
//  "agent_version", "agent_commit"}: the agent's build (engine/version.h).
Json host_report(const std::string& state_dir, const RuntimeChoice& runtime);

// The machine's host name as a platform name (lowercase, [a-z0-9-], at most 63 characters).
std::string default_host_name();

}  // namespace platform::agent
