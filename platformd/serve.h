#pragma once
// `platformd serve`: the control-plane roles of one process.
#include <chrono>
#include <string>
#include <vector>

#include "api/server.h"

namespace platform::daemon {

struct ServeOptions {
  std::string conninfo;
  std::vector<std::string> roles = {"api", "projections", "reconcilers"};
  api::ServerOptions api;
  std::chrono::milliseconds host_grace{30000};  // a host silent this long is down
  double cpu_ratio = 4.0;
  std::chrono::hours log_retention{24 * 7};  // instance logs kept this long  // CPU may be oversubscribed up to this factor (memory never)
  std::chrono::milliseconds projection_pause{0};  // fault injection for crash tests (hidden flag)
};

// Runs until SIGINT or SIGTERM; returns the process exit code.
int serve(const ServeOptions& options);

}  // namespace platform::daemon
