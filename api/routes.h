#pragma once
// The route table: the single source for dispatch, for 405 answers and for the OpenAPI check.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "api/auth.h"
#include "api/context.h"
#include "api/http.h"
#include "engine/event_store.h"

namespace platform::api {

// A long poll the session finishes asynchronously from the hub.
struct WatchPlan {
  events::Cursor after;
  events::Filter filter;
  int limit = 100;
  std::chrono::milliseconds wait{0};
  // A level-triggered long poll instead of an events page: called on a worker until it answers or the
  // wait ends (then `last` is true and it must answer); between calls the session waits on the hub for
  // any new event, holding no database connection.
  std::function<std::optional<Response>(bool last)> level;
  // With `level`: wait for NOTIFY platform_sessions with this payload instead of new events.
  std::string nudge_key;
};

using Handler = std::function<Response(Context&, const Request&, Principal&, const Params&)>;
using WatchHandler = std::function<WatchPlan(Context&, const Request&, Principal&, const Params&)>;
using PublicHandler = std::function<Response(Context&, const Request&)>;
using PublicWatchHandler = std::function<WatchPlan(Context&, const Request&)>;  // authenticates itself

struct Route {
  std::string method;
  std::string pattern;  // "/v1/orgs/{org}/projects"
  std::string summary;
  Handler handler;              // authenticated
  WatchHandler watch;           // authenticated long poll
  PublicHandler public_handler; // no authentication (/healthz, /metrics, the OpenAPI document)
  PublicWatchHandler public_watch = {};  // a long poll with its own authentication (host credentials)
};

const std::vector<Route>& routes();

// Finds the route for method and path. When the path matches with another method, sets
// *path_matched so the caller answers 405.
const Route* match(const std::string& method, const std::string& path, Params& params, bool* path_matched);

// Registration, one function per handler file.
void add_resource_routes(std::vector<Route>& out);
void add_event_routes(std::vector<Route>& out);
void add_system_routes(std::vector<Route>& out);
void add_config_routes(std::vector<Route>& out);
void add_secrets_routes(std::vector<Route>& out);
void add_deploy_routes(std::vector<Route>& out);
void add_host_routes(std::vector<Route>& out);
void add_token_routes(std::vector<Route>& out);
void add_instance_routes(std::vector<Route>& out);
void add_network_routes(std::vector<Route>& out);
void add_exec_routes(std::vector<Route>& out);
void add_session_routes(std::vector<Route>& out);

// The org `org_ref` (name or ID) when `p` may act in it, its ID in *org_id; else not_found, the same
// for an org that does not exist and one of someone else's. Returns p.
Principal& require_org(Context& ctx, Principal& p, const std::string& org_ref, std::string* org_id);

// The host credential of a platform-agent request ("Authorization: Bearer phc_..."); throws unauthenticated.
std::string host_credential(const Request& req);

// The after= version and wait= duration of a level-triggered long poll by version (the agent's
// assignments, the edge's config); throws invalid_request, naming `what` the version is.
struct VersionedWait {
  std::int64_t after = -1;  // none: answer at once
  std::chrono::milliseconds wait{0};
};
VersionedWait versioned_wait(const Request& req, const std::string& what);

// "10m" (that long ago) or an RFC 3339 UTC time ("...Z") -> "YYYY-MM-DDTHH:MM:SS.ffffffZ"; "" stays "".
// Throws invalid_request naming the query parameter `name`.
std::string normalize_time(const std::string& value, const std::string& name);

// The JSON answer to an events request (used by the session after a long poll).
Json events_page_json(const std::vector<events::Recorded>& events, events::Cursor next);

}  // namespace platform::api
