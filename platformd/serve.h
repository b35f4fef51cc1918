#pragma once
// `platformd serve`: the control-plane roles of one process.
#include <chrono>
#include <string>
#include <vector>

#include "api/ipam.h"
#include "api/server.h"

namespace platform::daemon {

struct ServeOptions {
  std::string conninfo;
  std::vector<std::string> roles = {"api", "projections", "reconcilers"};
  api::ServerOptions api;
  std::chrono::milliseconds host_grace{30000};  // a host silent this long is down
  double cpu_ratio = 4.0;  // CPU may be oversubscribed up to this factor (memory never)
  std::chrono::hours log_retention{24 * 7};  // instance logs kept this long
  std::chrono::milliseconds projection_pause{0};  // fault injection for crash tests (hidden flag)
  api::Pools pools;  // the address pools, upserted at start (docs/network.md)
};

// Runs until SIGINT or SIGTERM; returns the process exit code.
int serve(const ServeOptions& options);

}  // namespace platform::daemon
