// Health, metrics, the OpenAPI document and whoami.
#include "api/hub.h"
#include "api/metrics.h"
#include "api/openapi.h"
#include "api/routes.h"
#include "engine/db.h"
#include "engine/migrate.h"
#include "engine/version.h"

namespace platform::api {
namespace {

Response healthz(Context& ctx, const Request&) {
  Json checks = Json::object();
  bool ok = true;
  try {
    ctx.pool.read([](pqxx::transaction_base& tx) { return tx.exec("SELECT 1").size(); });
    checks["database"] = "ok";
  } catch (const std::exception& e) {
    checks["database"] = e.what();
    ok = false;
  }
  checks["watch_hub"] = ctx.hub.ready() ? "ok" : "starting";
  ok = ok && ctx.hub.ready();
  return json_response(ok ? 200 : 503, {{"status", ok ? "ok" : "unavailable"}, {"checks", checks}});
}

Response metrics(Context& ctx, const Request&) {
  Response r;
  r.content_type = "text/plain; version=0.0.4";
  r.body = ctx.metrics.render();
  return r;
}

Response openapi(Context&, const Request&) {
  Response r;
  r.body = openapi_document();
  return r;
}

// What this server is, without a token (like /healthz): its build, the API it speaks and the schema
// of its database, so a client or an operator can tell which build answers and whether the fleet and
// the database agree. Only versions: nothing about the caller or the data.
Response version(Context& ctx, const Request&) {
  Json schema = nullptr;
  try {
    auto st = ctx.pool.read([](pqxx::transaction_base& tx) { return db::schema_state(tx); });
    schema = {{"binary", st.binary}, {"database", st.database}, {"pending", st.pending}, {"unknown", st.unknown}};
  } catch (const std::exception&) {
    // The database is down: the build still answers; /healthz says what is wrong.
  }
  return json_response(200, {{"version", build_info().version},
                             {"commit", build_info().commit},
                             {"api", "v1"},
                             {"schema", schema}});
}

Response whoami(Context& ctx, const Request&, Principal& p, const Params&) {
  auto orgs = ctx.pool.read([&](pqxx::transaction_base& tx) {
    Json arr = Json::array();
    for (const auto& r : tx.exec_params(
             "SELECT r.id, r.name, m.role FROM core.memberships m JOIN core.resources r ON r.id = m.org_id"
             " WHERE m.user_id = $1 AND r.deleted_at IS NULL ORDER BY r.name",
             p.user_id))
      if (p.org_restriction.empty() || p.org_restriction == r[0].as<std::string>())
        arr.push_back({{"id", r[0].as<std::string>()},
                       {"name", r[1].as<std::string>()},
                       {"role", r[2].as<std::string>()}});
    return arr;
  });
  return json_response(200, {{"user_id", p.user_id},
                             {"user", p.user_name},
                             {"token_id", p.token_id},
                             {"token_expires_at", p.token_expires_at.empty() ? Json(nullptr) : Json(p.token_expires_at)},
                             {"org_restriction", p.org_restriction},
                             {"orgs", orgs}});
}

}  // namespace

void add_system_routes(std::vector<Route>& out) {
  out.push_back({"GET", "/healthz", "Liveness and readiness", {}, {}, healthz});
  out.push_back({"GET", "/metrics", "Prometheus metrics", {}, {}, metrics});
  out.push_back({"GET", "/v1/version", "This server's build (version, commit), API and database schema", {}, {},
                 version});
  out.push_back({"GET", "/v1/openapi.json", "This API's OpenAPI document", {}, {}, openapi});
  out.push_back({"GET", "/v1/whoami", "The caller's user, token and orgs", whoami, {}, {}});
}

}  // namespace platform::api
