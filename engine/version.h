#pragma once
// What this binary is: the release it belongs to and the commit it was built from. Every binary prints
// it for --version; the API answers it at GET /v1/version, agents send it with their heartbeats and
// edges with their status, so `platform version` and `platform host list` show a fleet that runs more
// than one build.
#include <string>

namespace platform {

struct BuildInfo {
  std::string version;  // the release, "0.1.0" (CMakeLists.txt's project version)
  std::string commit;   // "3f1c2a9b7d0e", "3f1c2a9b7d0e-dirty" (built with uncommitted changes) or "unknown"
};

const BuildInfo& build_info();

// "0.1.0 (commit 3f1c2a9b7d0e)": what --version prints after the program's name.
std::string version_line();

// The User-Agent our HTTP clients send: "platform-cli/0.1.0 (3f1c2a9b7d0e)".
std::string user_agent(const std::string& program);

// The first two numbers of a version, "0.1" of "0.1.0": builds that share them speak the same API
// and read the same events; a difference is what `platform version` warns about.
std::string release_line(const std::string& version);

}  // namespace platform
