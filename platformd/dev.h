#pragma once
// `platformd dev`: the whole platform on one machine, from a state folder.
#include <string>

namespace platform::daemon {

struct DevOptions {
  std::string state_dir;  // default: $PLATFORM_STATE, else dev::default_state_dir()
  int api_port = 7070;
  // Below Linux's ephemeral range (32768-60999): a client connection's source port there would keep
  // PostgreSQL from binding it (a TIME_WAIT of it lasts a minute), as 54320 once did after a test run.
  int pg_port = 7072;
  int registry_port = 7071;  // the OCI registry on 127.0.0.1
  std::string context_name = "dev";
  std::string runtime = "auto";  // the dev agent's --runtime: auto, microvm or sandbox
  // Dev address pools (docs/network.md#dev): env IPv6 addresses are served on loopback through a local
  // route for the whole pool; the IPv4 add-on comes from 127.0.0.0/8; instances get addresses on veths.
  std::string ipv6_pool = "fd70:6c61:7466::/112";
  std::string ipv4_pool = "127.0.77.0/28";
  std::string instance_pool = "10.211.0.0/16";
  std::string edge_tls_listen = "[::1]:8443";
  std::string edge_metrics = "127.0.0.1:9100";
};

int dev(const DevOptions& options);

}  // namespace platform::daemon
