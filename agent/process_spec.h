#pragma once
// What an instance runs, resolved from its image's config and its release: the argv (the manifest's
// command, else the image's Entrypoint + Cmd), the env (a default PATH, the image's Env, the release's
// config over it, PLATFORM_INSTANCE_ID), the workdir and the user (names looked up in the image's
// /etc/passwd and /etc/group). Both runtimes start exactly this.
#include <map>
#include <string>
#include <vector>

namespace platform::agent {

struct InstanceSpec;

struct ProcessSpec {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string workdir = "/";
  unsigned uid = 0, gid = 0;
};

// Throws PlatformError (invalid_request) when there is nothing to run or the image's user is unknown.
ProcessSpec resolve_process(const InstanceSpec& spec);

}  // namespace platform::agent
