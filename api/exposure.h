#pragma once
// What each env exposes (docs/network.md): its endpoints (the current release's manifest ones and the
// ones made with `platform endpoint create`) on its own addresses, and its SNI routes on the shared TLS
// listener. One computation serves three readers: the claims checked at deploy, `platform exposure`, and
// the edge's config snapshot (the same JSON as ingress/edge_config.h reads).
#include <pqxx/pqxx>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "api/context.h"
#include "api/resources.h"
#include "engine/json.h"

namespace platform::api {

struct Exposed {
  std::string kind;    // "endpoint" | "route"
  std::string id;      // ep_... for CLI endpoints; "<env id>/<name>" for the manifest's
  std::string name;
  std::string source;  // "manifest" | "cli"
  std::string org_id, env_id, project, app, env, process;
  int port = 0;            // endpoints: the external port (routes listen on the shared TLS listener)
  int internal_port = 0;
  std::string proxy_protocol;           // "" | "v2"
  std::vector<std::string> hostnames;   // routes
  std::vector<std::pair<int, std::string>> addresses;  // endpoints: (family, address) the env holds
  std::vector<std::string> backends;    // healthy instances' addresses
  std::vector<std::string> backend_hosts;  // the host of each of them
  std::vector<std::string> backend_names;  // and the instance's name
  int instances = 0;                    // instances of the process that should run
};

// Everything exposed, of one org or ("") of all, in a stable order; with `host_id`, only the instances on
// that host count (as backends and in the totals).
std::vector<Exposed> exposed(pqxx::transaction_base& tx, const std::string& org_id, const std::string& host_id = {});

// `platform exposure`: one row per address and port (endpoints) or per shared listener (routes).
Json exposure_json(const std::vector<Exposed>& all, const std::vector<ListenAddress>& tls_listen);

// The edge's snapshot without its version: endpoints with listen addresses and healthy backends, and the
// routes on the shared TLS listeners.
Json edge_snapshot(const std::vector<Exposed>& all, const std::vector<ListenAddress>& tls_listen);

// The snapshot of the edge on `host_id`, whose backends are that host's healthy instances (the edge
// reaches instances on its own host: docs/decisions/0007-network.md). Its "version" is set when this
// content is the version on record (core.edge_config, per host); otherwise bump_edge_version records it.
struct HostEdgeSnapshot {
  Json content;
  std::string hash;  // of the content without its version
};
HostEdgeSnapshot host_edge_snapshot(pqxx::transaction_base& tx, const std::string& host_id,
                                    const std::vector<ListenAddress>& tls_listen);
// Records `hash` as the host's snapshot and returns its version (the same one when it is already there).
std::int64_t bump_edge_version(pqxx::work& tx, const std::string& host_id, const std::string& hash);

// What each host's edge serves against what it should (docs/network.md#what-the-edge-serves): one object
// per host with an edge, {host, host_id, version (wanted), applied_version, state, seen_at,
// seen_seconds_ago, unbound: [{address, port, kind, error}], refused: {version, error} or null,
// unreachable: [{target, address, port, error, failures}] (backends it cannot connect to)}. state:
// "current"; "partial" (listeners not bound); "behind" (an older snapshot is served); "absent" (no poll
// for kEdgeAbsentSeconds, or never).
constexpr int kEdgeAbsentSeconds = 90;  // a poll waits at most 60 s (platform-edge asks for 20 s)
Json edge_states(pqxx::transaction_base& tx);
// For each host with an edge: whether the snapshot it last asked for is the one of the present state
// (host_edge_snapshot()'s content, built for every host from `all`: exposed() of every org).
std::map<std::string, bool> edges_asked_for_present(pqxx::transaction_base& tx,
                                                    const std::vector<ListenAddress>& tls_listen,
                                                    const std::vector<Exposed>& all);
// Says of each edge of edge_states() whether it serves the present state, by building each host's
// snapshot from `all`, exposed() of every org (edges_asked_for_present()): "wanted_version" (its version, or the next one when the content
// changed since the edge last asked) and "taken" (it asked for the present content and applied it). A
// "current" edge that has not taken it becomes "behind". Between a change and the edge's next poll (a
// few milliseconds while it runs) an edge has not taken it.
void mark_taken(pqxx::transaction_base& tx, Json& edges, const std::vector<ListenAddress>& tls_listen,
                const std::vector<Exposed>& all);
// The hosts whose edge is running and has yet to take the present state (`wait` waits for them): not
// absent, not taken, not holding on to a refusal of the very snapshot it was handed, and reporting what it
// serves (one that never reported is older than that report and would be waited for in vain). Needs
// mark_taken().
Json edges_pending(const Json& edges);
// Marks the rows of exposure_json() (made of `all`) with the backends an edge cannot connect to:
// "unreachable": unreachable_backends().
void mark_unreachable(Json& rows, const std::vector<Exposed>& all, const Json& edges);
// What an org is shown of each edge (edge_states() after mark_taken(), which holds every org's): only
// the unbound listeners of `rows` (the org's exposure rows), no "unreachable" (the rows carry their
// own), and "partial" only for the org's own listeners.
void narrow_edges_to(Json& edges, const Json& rows);
// Marks the rows of exposure_json() that an edge does not listen for: "not_listening": [{host, error}].
void mark_not_listening(Json& rows, const Json& edges);
// Whether the edge on `host_id` has stopped sending new connections to an instance of that host that is
// asked to stop (its agent asks before SIGTERM): {drained, why}. Drained when the edge serves the present
// state (which leaves out instances asked to stop), or when no edge would ever take it (none there,
// absent, never reported, or it refused that snapshot: edges_pending()). Not drained while the instance is
// still to run. Not found when the instance is not on that host.
Json instance_drain(pqxx::transaction_base& tx, const std::string& host_id, const std::string& instance_id,
                    const std::vector<ListenAddress>& tls_listen);
// What the env's endpoints and routes lack to be served (`platform status`; `wait` fails on
// not_listening): {traffic: [words: an address or the shared TLS listener an edge could not bind, a
// backend an edge cannot connect to, an edge absent or refusing its config, no edge at all],
// not_listening: [{kind, name, hostnames (routes), address, port, host, error}], unreachable:
// unreachable_backends(), edges_pending: edges_pending()}. Empty lists when the env exposes nothing
// or all is served.
Json env_traffic(pqxx::transaction_base& tx, const std::string& env_id, const std::vector<ListenAddress>& tls_listen);
// An edge's report (POST /v1/edge/status, already validated); false when the host has no snapshot yet.
// `build` is the edge's {version, commit}, or null from an edge too old to send it.
bool record_edge_status(pqxx::transaction_base& tx, const std::string& host_id, std::int64_t version,
                        const Json& unbound, const Json& refused, const Json& unreachable, const Json& build);
// The backends of `x` that an edge of `edges` (edge_states()) says it cannot connect to, each an object
// {kind, name, host, instance, address, port, error, failures, text}; the text names the instance and, for
// a refused internal port, asks whether the process listens there. Backends no longer in `x` are left out.
Json unreachable_backends(const Exposed& x, const Json& edges);
// A poll from the edge: it is alive.
void record_edge_seen(pqxx::transaction_base& tx, const std::string& host_id);

// Replaces the env's manifest claims with the ports and host names of `manifest` (normalised release
// JSON). A claim held elsewhere is refused (name_taken): naming the holder when it is in the same org,
// only "taken" when not.
void claim_manifest_exposure(pqxx::work& tx, const Resolved& env, const Json& manifest);
// Claims the port of an endpoint made with the CLI (same rules).
void claim_endpoint_port(pqxx::work& tx, const Resolved& env, int port);
// Drops the env's claims: every one, or those of `source` on `port` (0: all of that source).
void drop_claims(pqxx::work& tx, const std::string& env_id, const std::string& source = {}, int port = 0);

// The endpoints of the env, both sources, as JSON (endpoint list and describe).
Json env_endpoints(pqxx::transaction_base& tx, const std::string& env_id);

// The env's CLI endpoints whose process `manifest` (normalised release JSON) does not run: they would
// have no backends under it. [{endpoint, process, text}], the text with the exact delete command
// (`env_flags`: --project/--app/--env). Deploy, diff and rollback say so in their answers.
Json stranded_endpoints(pqxx::transaction_base& tx, const std::string& env_id, const Json& manifest,
                        const std::string& env_flags);

}  // namespace platform::api
