#pragma once
// A run's network (docs/network.md#reachability): a named network namespace with a veth pair to the
// host, so the edge (in the host's namespace) reaches the run's ports at its private address (from the
// control plane's IPAM). The host routes the address's /32 to its side of the pair, which holds
// 169.254.0.1 (link scope); inside, the namespace's default route goes back through it.
//   holds_address (sandbox): the namespace's end, eth0, holds the address; the container joins it.
//   routed (microvm): the namespace's end, "uplink", holds nothing; the VM's shim adds the tap device
//     and routes the address on to the guest (agent/vm_shim.h), answering ARP for it (proxy ARP).
// Made with iproute2 (`ip`).
#include <string>

namespace platform::agent {

enum class RunNetworkKind { holds_address, routed };

inline constexpr const char* kRunUplink = "uplink";  // the routed namespace's end of the pair

// "/run/netns/<name>" for runc's config or the VM's shim. Throws PlatformError naming the step that
// failed (the partial namespace is removed).
std::string create_run_network(const std::string& run_id, const std::string& address,
                               RunNetworkKind kind = RunNetworkKind::holds_address);
// Removes the namespace and with it the veth pair and the host's route; nothing when there is none.
void destroy_run_network(const std::string& run_id);

}  // namespace platform::agent
