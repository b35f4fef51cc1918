// Hosts (docs/hosts.md): join tokens and listings for platform operators, enrolment with a join token
// and heartbeats with the host's credential for platform-agent. Hosts belong to the platform: to a user
// who is not an operator they do not exist (404), like another org's resources.
#include <fmt/format.h>

#include "api/body.h"
#include "api/exposure.h"
#include "api/hosts.h"
#include "api/metrics.h"
#include "api/routes.h"
#include "engine/db.h"
#include "engine/duration.h"
#include "engine/ids.h"

namespace platform::api {
namespace {

void require_operator(Context& ctx, const Principal& p) {
  if (!ctx.pool.read([&](pqxx::transaction_base& tx) { return is_operator(tx, p.user_id); }))
    throw PlatformError(ErrorCode::not_found, "no hosts here",
                        "Hosts are managed by platform operators (platformd token create --operator).");
}

Response post_join_token(Context& ctx, const Request& req, Principal& p, const Params&) {
  auto body = parse_body(req.body.empty() ? "{}" : req.body, {{"ttl", FieldType::string}});
  require_operator(ctx, p);
  std::chrono::seconds ttl{3600};
  if (body.contains("ttl")) {
    auto d = parse_duration(body["ttl"].get<std::string>());
    if (!d || *d < std::chrono::seconds(10) || *d > std::chrono::hours(24 * 7))
      throw PlatformError(ErrorCode::invalid_request, "ttl must be a duration from 10s to 168h",
                          "e.g. {\"ttl\": \"30m\"}");
    ttl = std::chrono::duration_cast<std::chrono::seconds>(*d);
  }
  // Not through run_mutation: its Idempotency-Key store would keep the secret. A retry issues a new
  // token; an unused one expires.
  const auto op = new_id("op");
  ctx.metrics.mutations_total++;
  auto t = ctx.pool.transact([&](pqxx::work& tx) { return issue_join_token(tx, p.user_id, ttl, req.request_id, op); });
  return json_response(201, {{"token_id", t.id},
                             {"token", t.secret},
                             {"expires_at", t.expires_at},
                             {"single_use", true},
                             {"operation_id", op},
                             {"next", Json::array({"platform-agent --join " + t.secret + " --control URL --state DIR",
                                                   "platform host list"})}});
}

Response post_enrol(Context& ctx, const Request& req) {
  auto body = parse_body(req.body, {{"join_token", FieldType::string, true},
                                    {"name", FieldType::string, true},
                                    {"report", FieldType::object, true}});
  ctx.metrics.mutations_total++;
  auto e = ctx.pool.transact([&](pqxx::work& tx) {
    return enrol_host(tx, body["join_token"], body["name"], body["report"]);
  });
  return json_response(201, {{"host_id", e.host_id},
                             {"name", e.name},
                             {"credential", e.credential},
                             {"heartbeat_interval_ms", ctx.host_heartbeat.count()}});
}

Response post_heartbeat(Context& ctx, const Request& req) {
  auto body = parse_body(req.body, {{"report", FieldType::object, true}});
  auto out = ctx.pool.transact([&](pqxx::work& tx) {
    auto host = authenticate_host(tx, host_credential(req)).id;
    auto before = heartbeat(tx, host, body["report"]);
    return Json{{"host_id", host}, {"state", "up"}, {"previous_state", before},
                {"heartbeat_interval_ms", ctx.host_heartbeat.count()}};
  });
  return json_response(200, out);
}

Response get_hosts(Context& ctx, const Request&, Principal& p, const Params&) {
  require_operator(ctx, p);
  auto hosts = ctx.pool.read([&](pqxx::transaction_base& tx) { return list_hosts(tx); });
  return json_response(200, {{"hosts", hosts}, {"count", hosts.size()}});
}

Response get_host(Context& ctx, const Request&, Principal& p, const Params& params) {
  require_operator(ctx, p);
  auto host = ctx.pool.read([&](pqxx::transaction_base& tx) {
    auto h = describe_host(tx, params.at("host"));
    if (h && h->at("edge").is_object()) {
      Json edges = Json::array({h->at("edge")});
      mark_taken(tx, edges, ctx.edge_tls_listen, exposed(tx, ""));
      (*h)["edge"] = edges[0];
    }
    return h;
  });
  if (!host)
    throw PlatformError(ErrorCode::not_found, "host \"" + params.at("host").substr(0, 80) + "\" not found",
                        "List the hosts with `platform host list`.");
  return json_response(200, *host);
}

}  // namespace

std::string host_credential(const Request& req) {
  auto h = req.header("authorization");
  if (h.rfind("Bearer ", 0) != 0)
    throw PlatformError(ErrorCode::unauthenticated, "missing host credential",
                        "platform-agent sends \"Authorization: Bearer phc_...\".");
  return h.substr(7);
}

VersionedWait versioned_wait(const Request& req, const std::string& what) {
  VersionedWait out;
  if (auto a = req.param("after"); !a.empty()) {
    if (a.size() > 18 || a.find_first_not_of("0123456789") != std::string::npos)
      throw PlatformError(ErrorCode::invalid_request, "after must be " + what + " (a number)",
                          "Pass back the version of the previous answer.");
    out.after = std::stoll(a);
  }
  if (auto w = req.param("wait"); !w.empty()) {
    auto d = parse_duration(w);
    if (!d || *d > std::chrono::seconds(60))
      throw PlatformError(ErrorCode::invalid_request, "wait must be a duration of at most 60s", "e.g. wait=30s");
    out.wait = *d;
  }
  return out;
}

void add_host_routes(std::vector<Route>& out) {
  out.push_back({"POST", "/v1/hosts/join-tokens", "Issue a single-use join token for platform-agent (operators)",
                 post_join_token, {}, {}});
  out.push_back({"GET", "/v1/hosts", "Every host: state, capacity, runtime and last heartbeat (operators)", get_hosts,
                 {}, {}});
  out.push_back({"GET", "/v1/hosts/{host}", "One host with its newest report and events (operators)", get_host, {}, {}});
  out.push_back({"POST", "/v1/hosts/enrol", "Enrol a host with a join token (platform-agent); answers its credential",
                 {}, {}, post_enrol});
  out.push_back({"POST", "/v1/hosts/heartbeat", "A host's heartbeat with its report (platform-agent, host credential)",
                 {}, {}, post_heartbeat});
}

}  // namespace platform::api
