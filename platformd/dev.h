#pragma once
// `platformd dev`: the whole platform on one machine, from a state folder.
#include <string>

namespace platform::daemon {

struct DevOptions {
  std::string state_dir;  // default: $PLATFORM_STATE or ~/.local/share/platform/dev
  int api_port = 7070;
  int pg_port = 54320;
  int registry_port = 7071;  // the OCI registry on 127.0.0.1
  std::string context_name = "dev";
  std::string runtime = "auto";  // the dev agent's --runtime: auto, microvm or sandbox
};

int dev(const DevOptions& options);

}  // namespace platform::daemon
