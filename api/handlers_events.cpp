// Events (list and long-poll watch by cursor) and operations (receipts and their status).
#include <fmt/format.h>

#include <ctime>
#include <set>

#include "api/hub.h"
#include "api/metrics.h"
#include "api/mutation.h"
#include "api/resources.h"
#include "api/routes.h"
#include "engine/db.h"
#include "engine/duration.h"

namespace platform::api {
namespace {

// What the API shows of an event: all of it, except the sealed secret values a SecretsVersionCreated
// event records. Their nonce and ciphertext stay in the database, as `secrets list` keeps them
// (docs/secrets.md); the name, digest, size, version and who set it when remain.
Json public_event_json(const events::Recorded& e) {
  auto j = e.to_json();
  if (e.type != "SecretsVersionCreated") return j;
  auto data = j.find("data");
  if (data == j.end() || !data->is_object()) return j;
  auto values = data->find("values");
  if (values == data->end() || !values->is_object()) return j;
  for (auto& [name, sealed] : values->items())
    if (sealed.is_object()) {
      sealed.erase("nonce");
      sealed.erase("ciphertext");
    }
  return j;
}

WatchPlan events(Context& ctx, const Request& req, Principal& p, const Params& params) {
  static const std::set<std::string> known = {"after", "limit", "wait", "type", "resource", "operation", "since", "tail"};
  for (const auto& [k, v] : req.query)
    if (!known.count(k))
      throw PlatformError(ErrorCode::invalid_request, "unknown query parameter \"" + k + "\"",
                          "Known parameters: after, limit, wait, type, resource, operation, since, tail.");
  WatchPlan plan;
  require_org(ctx, p, params.at("org"), &plan.filter.org_id);
  auto after = req.param("after");
  if (after == "now") {
    plan.after = ctx.hub.head();
  } else if (!after.empty()) {
    auto c = events::Cursor::decode(after);
    if (!c)
      throw PlatformError(ErrorCode::invalid_request, "after=\"" + after.substr(0, 60) + "\" is not a cursor",
                          "Pass back the next_cursor of a previous answer, or after=now.");
    plan.after = *c;
  }
  if (auto l = req.param("limit"); !l.empty()) {
    char* end = nullptr;
    long n = std::strtol(l.c_str(), &end, 10);
    if (*end != '\0' || n < 1 || n > 1000)
      throw PlatformError(ErrorCode::invalid_request, "limit must be an integer from 1 to 1000", "");
    plan.limit = static_cast<int>(n);
  }
  if (auto w = req.param("wait"); !w.empty()) {
    auto d = parse_duration(w);
    if (!d || *d > std::chrono::seconds(60))
      throw PlatformError(ErrorCode::invalid_request, "wait must be a duration of at most 60s, e.g. wait=30s", "");
    plan.wait = *d;
  }
  plan.filter.type = req.param("type");
  plan.filter.resource_id = req.param("resource");
  plan.filter.operation_id = req.param("operation");
  plan.filter.since = normalize_time(req.param("since"), "since");
  if (auto t = req.param("tail"); !t.empty()) {
    // The newest N that match, answered at once, with a cursor to follow on from.
    char* end = nullptr;
    const long n = std::strtol(t.c_str(), &end, 10);
    if (*end != '\0' || n < 1 || n > 1000)
      throw PlatformError(ErrorCode::invalid_request, "tail must be an integer from 1 to 1000", "e.g. tail=20");
    if (!after.empty() || plan.wait.count() > 0)
      throw PlatformError(ErrorCode::invalid_request, "tail cannot be combined with after or wait",
                          "Ask for the tail once, then follow from its next_cursor with after and wait.");
    plan.level = [&ctx, filter = plan.filter, n](bool) -> std::optional<Response> {
      auto page = ctx.pool.read([&](pqxx::transaction_base& tx) { return events::read_tail(tx, filter, static_cast<int>(n)); });
      return json_response(200, events_page_json(page.events, page.next));
    };
  }
  ctx.metrics.watch_requests_total++;
  return plan;
}

Response operation(Context& ctx, const Request&, Principal& p, const Params& params) {
  const auto& id = params.at("id");
  auto not_found = PlatformError(ErrorCode::not_found, "operation \"" + id.substr(0, 100) + "\" not found",
                                 "Operation IDs (op_...) are printed in every receipt.");
  auto evs = ctx.pool.read([&](pqxx::transaction_base& tx) {
    std::vector<events::Recorded> out;
    auto page = tx.exec_params(
        "SELECT tx_id::text, global_position FROM events WHERE metadata->>'operation_id' = $1"
        " ORDER BY events.tx_id, events.global_position LIMIT 1",
        id);
    if (page.empty()) return out;
    events::Cursor before{std::stoull(page[0][0].as<std::string>()), page[0][1].as<std::int64_t>() - 1};
    events::Filter f;
    f.operation_id = id;
    return events::read_after(tx, before, f, 1000).events;
  });
  if (evs.empty()) throw not_found;
  auto org_id = evs.front().metadata.value("org_id", "");
  if (org_id.empty() || !ctx.auth.can_access_org(p, org_id)) throw not_found;
  auto pending = ctx.pool.read([&](pqxx::transaction_base& tx) { return pending_projections(tx, evs.back().cursor); });
  Json resources = Json::array(), list = Json::array();
  std::set<std::string> seen;
  for (const auto& e : evs) {
    list.push_back(public_event_json(e));
    auto rid = e.metadata.value("resource_id", "");
    if (seen.insert(rid).second)
      resources.push_back({{"kind", e.metadata.value("resource_kind", "")},
                           {"id", rid},
                           {"name", e.metadata.value("resource_name", e.data.value("name", ""))}});
  }
  Json out = {{"id", id},
              {"kind", evs.front().metadata.value("operation_kind", "")},
              {"actor", evs.front().metadata.value("actor", "")},
              {"actor_name", evs.front().metadata.value("actor_name", evs.front().metadata.value("actor", ""))},
              {"org_id", org_id},
              {"request_id", evs.front().metadata.value("request_id", "")},
              {"status", pending.empty() ? "succeeded" : "accepted"},
              {"pending", pending},
              {"started_at", evs.front().recorded_at},
              {"finished_at", evs.back().recorded_at},
              {"resources", resources},
              {"events", list}};
  return json_response(200, out);
}

Response operations(Context& ctx, const Request& req, Principal& p, const Params& params) {
  for (const auto& [k, v] : req.query)
    throw PlatformError(ErrorCode::invalid_request, "unknown query parameter \"" + k + "\"", "This endpoint takes none.");
  std::string org_id;
  require_org(ctx, p, params.at("org"), &org_id);
  auto items = ctx.pool.read([&](pqxx::transaction_base& tx) {
    Json arr = Json::array();
    for (const auto& r : tx.exec_params(
             "SELECT o.id, o.kind, o.actor, o.resource_id, o.request_id,"
             " to_char(o.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), o.event_count,"
             " coalesce(u.name, o.actor)"
             " FROM read_model.operations o LEFT JOIN core.users u ON u.id = o.actor"
             " WHERE o.org_id = $1 ORDER BY o.started_at DESC, o.id LIMIT 100",
             org_id))
      arr.push_back({{"id", r[0].as<std::string>()},
                     {"kind", r[1].as<std::string>()},
                     {"actor", r[2].as<std::string>()},
                     {"actor_name", r[7].as<std::string>()},
                     {"resource_id", r[3].as<std::string>()},
                     {"request_id", r[4].as<std::string>()},
                     {"started_at", r[5].as<std::string>()},
                     {"events", r[6].as<int>()}});
    return arr;
  });
  return json_response(200, {{"items", items}, {"count", items.size()}});
}

}  // namespace

Principal& require_org(Context& ctx, Principal& p, const std::string& org_ref, std::string* org_id) {
  auto org = ctx.pool.read([&](pqxx::transaction_base& tx) -> std::optional<Resolved> {
    try {
      return resolve(tx, *kind_by_name("org"), "", org_ref);
    } catch (const PlatformError&) {
      return std::nullopt;
    }
  });
  if (!org || !ctx.auth.can_access_org(p, org->id))
    throw PlatformError(ErrorCode::not_found, "org \"" + org_ref.substr(0, 100) + "\" not found",
                        "List your orgs with `platform org list`.");
  *org_id = org->id;
  return p;
}

// "10m" (that long ago) or an RFC 3339 UTC timestamp -> "YYYY-MM-DDTHH:MM:SS.ffffffZ".
std::string normalize_time(const std::string& s, const std::string& name) {
  if (s.empty()) return s;
  if (auto d = parse_duration(s)) {
    auto t = std::chrono::system_clock::now() - *d;
    auto secs = std::chrono::system_clock::to_time_t(t);
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count() % 1000000;
    std::tm tm{};
    gmtime_r(&secs, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                       tm.tm_hour, tm.tm_min, tm.tm_sec, us);
  }
  int Y, M, D, h, m, sec;
  char z = 0;
  if (s.size() == 20 && std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &Y, &M, &D, &h, &m, &sec, &z) == 7 &&
      z == 'Z' && M >= 1 && M <= 12 && D >= 1 && D <= 31 && h < 24 && m < 60 && sec < 61)
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000000Z", Y, M, D, h, m, sec);
  throw PlatformError(ErrorCode::invalid_request, name + "=\"" + s.substr(0, 60) + "\" is neither a duration nor a UTC time",
                      "Use a duration such as 10m or 2h, or a time such as 2026-11-21T09:30:00Z.");
}

Json events_page_json(const std::vector<events::Recorded>& evs, events::Cursor next) {
  Json arr = Json::array();
  for (const auto& e : evs) arr.push_back(public_event_json(e));
  return {{"events", arr}, {"next_cursor", next.encode()}, {"count", evs.size()}};
}

void add_event_routes(std::vector<Route>& out) {
  out.push_back({"GET", "/v1/orgs/{org}/events", "List or watch (long poll) an org's events by cursor", {}, events, {}});
  out.push_back({"GET", "/v1/orgs/{org}/operations", "List an org's recent operations", operations, {}, {}});
  out.push_back({"GET", "/v1/operations/{id}", "Describe an operation: its events and status", operation, {}, {}});
}

}  // namespace platform::api
