#include "api/hosts.h"

#include <fmt/format.h>

#include "api/exposure.h"
#include "engine/crypto.h"
#include "engine/db.h"
#include "engine/error.h"
#include "engine/event_store.h"
#include "engine/ids.h"
#include "engine/names.h"

namespace platform::api {
namespace {

void append_host_event(pqxx::work& tx, const std::string& host_id, const std::string& type, const Json& data,
                       const std::string& actor, const std::string& operation_id = {}) {
  Json meta = {{"actor", actor}, {"resource_kind", "host"}, {"resource_id", host_id}};
  if (!operation_id.empty()) meta["operation_id"] = operation_id;
  events::append(tx, "host-" + host_id, std::nullopt, {{uuid_to_string(new_uuid_v7()), type, 1, data, meta}});
}

[[noreturn]] void unauthenticated(const std::string& why, const std::string& hint) {
  throw PlatformError(ErrorCode::unauthenticated, why, hint);
}

// A string field of a report, or "" (absent, or stored before reports were checked for it).
std::string text_field(const Json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

Json host_row_json(const pqxx::row& r) {
  Json report = Json::parse(r[6].as<std::string>());
  return {{"id", r[0].as<std::string>()},
          {"name", r[1].as<std::string>()},
          {"enrolled_at", r[2].as<std::string>()},
          {"state", r[3].as<std::string>()},
          {"last_heartbeat", r[4].as<std::string>()},
          {"seconds_since_heartbeat", r[5].as<double>()},
          {"capacity", report.value("capacity", Json::object())},
          {"runtime", report.value("runtime", Json::object())},
          {"agent_version", text_field(report, "agent_version")},
          {"agent_commit", text_field(report, "agent_commit")},
          {"state_since", r[7].as<std::string>()},
          // What the scheduler has placed there (instances not yet stopped; failed ones hold nothing).
          {"allocated", {{"cpu", r[8].as<double>()}, {"memory_mib", r[9].as<std::int64_t>()}}},
          {"instances", r[10].as<int>()}};
}

std::string host_select() {
  return "SELECT h.id, h.name, " + db::sql_rfc3339("h.enrolled_at") + ", l.state, " + db::sql_rfc3339("l.last_seen") +
         ", extract(epoch FROM now() - l.last_seen)::float8, l.report::text, " + db::sql_rfc3339("l.changed_at") +
         ", coalesce(a.cpu, 0)::float8, coalesce(a.memory_mib, 0)::bigint, coalesce(a.n, 0)::int"
         " FROM core.hosts h JOIN core.host_liveness l ON l.host_id = h.id"
         " LEFT JOIN (SELECT host_id, sum(cpu) AS cpu, sum(memory_mib) AS memory_mib, count(*) AS n"
         "            FROM core.instances WHERE state NOT IN ('stopped', 'lost', 'failed') GROUP BY host_id) a"
         " ON a.host_id = h.id";
}

}  // namespace

void check_host_report(const Json& report) {
  auto fail = [](const std::string& what) {
    throw PlatformError(ErrorCode::invalid_request, "the host report " + what,
                        "Send {\"capacity\": {\"cpus\", \"memory_mib\", \"disk_mib\"}, \"runtime\": {\"name\", "
                        "\"reason\"}} as platform-agent does.");
  };
  if (!report.is_object()) fail("is not an object");
  if (!report.contains("capacity") || !report["capacity"].is_object()) fail("has no capacity object");
  for (const char* k : {"cpus", "memory_mib", "disk_mib"}) {
    const auto& c = report["capacity"];
    if (!c.contains(k) || !c[k].is_number() || c[k].get<double>() < 0 || c[k].get<double>() > 1e9)
      fail(std::string("has no valid capacity.") + k);
  }
  if (!report.contains("runtime") || !report["runtime"].is_object() || !report["runtime"].contains("name") ||
      !report["runtime"]["name"].is_string())
    fail("has no runtime.name");
  const auto& name = report["runtime"]["name"].get_ref<const std::string&>();
  if (name != "microvm" && name != "sandbox" && name != "none") fail("runtime.name is not microvm, sandbox or none");
  if (report["runtime"].contains("instance_overhead_mib")) {
    const auto& o = report["runtime"]["instance_overhead_mib"];
    if (!o.is_number_integer() || o.get<std::int64_t>() < 0 || o.get<std::int64_t>() > 65536)
      fail("runtime.instance_overhead_mib is not an integer from 0 to 65536");
  }
  for (const char* k : {"agent_version", "agent_commit"})
    if (report.contains(k) && (!report[k].is_string() || report[k].get<std::string>().size() > 64))
      fail(std::string(k) + " is not a string of at most 64 characters");
  if (report.dump().size() > 16 * 1024) fail("is larger than 16 KiB");
}

JoinToken issue_join_token(pqxx::work& tx, const std::string& user_id, std::chrono::seconds ttl,
                           const std::string& request_id, const std::string& operation_id) {
  JoinToken t{new_id("hjt"), "pjt_" + random_secret(32), ""};
  auto r = tx.exec_params("INSERT INTO core.host_join_tokens (id, secret_hash, created_by, expires_at)"
                          " VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING " +
                              db::sql_rfc3339("expires_at"),
                          t.id, sha256_hex(t.secret), user_id, static_cast<double>(ttl.count()));
  t.expires_at = r[0][0].as<std::string>();
  Json meta = {{"actor", user_id}, {"resource_kind", "host_join_token"}, {"resource_id", t.id},
               {"request_id", request_id}, {"operation_id", operation_id}, {"operation_kind", "host.join_token"}};
  events::append(tx, "hostjoin-" + t.id, -1,
                 {{uuid_to_string(new_uuid_v7()), "HostJoinTokenIssued", 1,
                   {{"token_id", t.id}, {"expires_at", t.expires_at}}, meta}});
  return t;
}

Enrolled enrol_host(pqxx::work& tx, const std::string& join_secret, const std::string& name, const Json& report) {
  check_host_report(report);
  if (!valid_name(name))
    throw PlatformError(ErrorCode::invalid_request, "invalid host name \"" + name.substr(0, 80) + "\"",
                        name_rule_for(name));
  if (join_secret.rfind("pjt_", 0) != 0 || join_secret.size() != 68)
    unauthenticated("that is not a join token", "Issue one with `platform host join-token` and pass it to --join.");
  // FOR UPDATE: two agents racing with one token; the second sees it used.
  auto t = tx.exec_params(
      "SELECT id, used_by, expires_at < now() FROM core.host_join_tokens WHERE secret_hash = $1 FOR UPDATE",
      sha256_hex(join_secret));
  if (t.empty()) unauthenticated("unknown join token", "Issue one with `platform host join-token`.");
  if (!t[0][1].is_null())
    unauthenticated("this join token was already used (by host " + t[0][1].as<std::string>() + ")",
                    "Join tokens are single-use: issue a new one with `platform host join-token`. An enrolled agent "
                    "keeps its credential in its state folder and needs no token to restart.");
  if (t[0][2].as<bool>())
    unauthenticated("this join token has expired", "Issue a new one with `platform host join-token`.");
  Enrolled e{new_id("host"), name, "phc_" + random_secret(32), 0};
  try {
    pqxx::subtransaction sub(tx, "host_name");
    sub.exec_params("INSERT INTO core.hosts (id, name, credential_hash, join_token_id) VALUES ($1, $2, $3, $4)", e.host_id,
                    name, sha256_hex(e.credential), t[0][0].as<std::string>());
    sub.commit();
  } catch (const pqxx::unique_violation&) {
    throw PlatformError(ErrorCode::name_taken, "a host named \"" + name + "\" is already enrolled",
                        "Give this one another name (platform-agent --name), or reuse the enrolled agent's state "
                        "folder.");
  }
  tx.exec_params("UPDATE core.host_join_tokens SET used_by = $1, used_at = now() WHERE id = $2", e.host_id,
                 t[0][0].as<std::string>());
  tx.exec_params("INSERT INTO core.host_liveness (host_id, state, last_seen, report, changed_at)"
                 " VALUES ($1, 'up', now(), $2::jsonb, now())",
                 e.host_id, report.dump());
  append_host_event(tx, e.host_id, "HostEnrolled",
                    {{"host_id", e.host_id}, {"name", name}, {"join_token_id", t[0][0].as<std::string>()},
                     {"capacity", report["capacity"]}, {"runtime", report["runtime"]},
                     {"agent_version", text_field(report, "agent_version")},
                     {"agent_commit", text_field(report, "agent_commit")}},
                    "host:" + e.host_id);
  return e;
}

HostIdentity authenticate_host(pqxx::transaction_base& tx, const std::string& credential) {
  if (credential.rfind("phc_", 0) != 0 || credential.size() != 68)
    unauthenticated("that is not a host credential", "platform-agent sends the credential it got at enrolment.");
  auto r = tx.exec_params("SELECT id, name FROM core.hosts WHERE credential_hash = $1", sha256_hex(credential));
  if (r.empty()) unauthenticated("unknown host credential", "Enrol the agent again with a new join token.");
  return {r[0][0].as<std::string>(), r[0][1].as<std::string>()};
}

namespace {
// What changed between two reports, in words ("agent 0.1.0 (commit a) → 0.2.0 (commit b); memory 8192 →
// 16384 MiB"): a changed runtime, CPU count, memory or agent build. Empty when none did. Free disk
// moves with every log line, so it is not a change worth an event.
std::string report_changes(const Json& old_report, const Json& report) {
  std::vector<std::string> out;
  const auto build = [](const Json& r) {
    const auto v = text_field(r, "agent_version");
    return v.empty() ? std::string("unknown") : v + " (commit " + text_field(r, "agent_commit") + ")";
  };
  if (build(old_report) != build(report)) out.push_back("agent " + build(old_report) + " → " + build(report));
  const auto cap = [](const Json& r, const char* k) {
    return r.value("capacity", Json::object()).value(k, Json()).dump();
  };
  if (cap(old_report, "cpus") != cap(report, "cpus"))
    out.push_back("cpus " + cap(old_report, "cpus") + " → " + cap(report, "cpus"));
  if (cap(old_report, "memory_mib") != cap(report, "memory_mib"))
    out.push_back("memory " + cap(old_report, "memory_mib") + " → " + cap(report, "memory_mib") + " MiB");
  const auto runtime = [](const Json& r) { return r.value("runtime", Json::object()); };
  if (runtime(old_report) != runtime(report)) {
    const auto was = runtime(old_report).value("name", ""), now = runtime(report).value("name", "");
    out.push_back(was == now ? "runtime " + now + " (its details)" : "runtime " + was + " → " + now);
  }
  std::string text;
  for (const auto& o : out) text += (text.empty() ? "" : "; ") + o;
  return text;
}
}  // namespace

std::string heartbeat(pqxx::work& tx, const std::string& host_id, const Json& report) {
  check_host_report(report);
  auto r = tx.exec_params("SELECT state, report::text FROM core.host_liveness WHERE host_id = $1 FOR UPDATE", host_id);
  const auto before = r[0][0].as<std::string>();
  const auto changes = report_changes(Json::parse(r[0][1].as<std::string>()), report);
  tx.exec_params("UPDATE core.host_liveness SET last_seen = now(), report = $2::jsonb,"
                 " state = 'up', changed_at = CASE WHEN state = 'up' THEN changed_at ELSE now() END WHERE host_id = $1",
                 host_id, report.dump());
  if (before == "down")
    append_host_event(tx, host_id, "HostUp", {{"host_id", host_id}, {"reason", "heartbeats resumed"}},
                      "host:" + host_id);
  if (!changes.empty())
    append_host_event(tx, host_id, "HostReportChanged",
                      {{"host_id", host_id},
                       {"capacity", report["capacity"]},
                       {"runtime", report["runtime"]},
                       {"agent_version", text_field(report, "agent_version")},
                       {"agent_commit", text_field(report, "agent_commit")},
                       {"reason", changes}},
                      "host:" + host_id);
  return before;
}

std::vector<std::string> mark_silent_hosts_down(pqxx::work& tx, std::chrono::milliseconds grace) {
  std::vector<std::string> out;
  auto rows = tx.exec_params(
      "UPDATE core.host_liveness SET state = 'down', changed_at = now()"
      " WHERE state = 'up' AND last_seen < now() - make_interval(secs => $1)"
      " RETURNING host_id, " + db::sql_rfc3339("last_seen") + ", extract(epoch FROM now() - last_seen)::float8",
      static_cast<double>(grace.count()) / 1000.0);
  for (const auto& r : rows) {
    const auto id = r[0].as<std::string>();
    append_host_event(tx, id, "HostDown",
                      {{"host_id", id},
                       {"last_heartbeat", r[1].as<std::string>()},
                       {"grace_seconds", static_cast<double>(grace.count()) / 1000.0},
                       {"reason", fmt::format("no heartbeat for {:.1f} s (the grace period is {:.1f} s)",
                                              r[2].as<double>(), static_cast<double>(grace.count()) / 1000.0)}},
                      "system");
    out.push_back(id);
  }
  return out;
}

Json list_hosts(pqxx::transaction_base& tx) {
  Json out = Json::array();
  for (const auto& r : tx.exec(host_select() + " ORDER BY h.name")) out.push_back(host_row_json(r));
  return out;
}

std::optional<Json> describe_host(pqxx::transaction_base& tx, const std::string& id_or_name) {
  auto r = tx.exec_params(host_select() + " WHERE h.id = $1 OR h.name = $1", id_or_name);
  if (r.empty()) return std::nullopt;
  Json host = host_row_json(r[0]);
  host["report"] = Json::parse(r[0][6].as<std::string>());
  Json evs = Json::array();
  for (const auto& e : tx.exec_params(
           "SELECT type, " + db::sql_rfc3339("recorded_at") + ", data::text FROM events WHERE stream_name = $1"
           " ORDER BY stream_version DESC LIMIT 20",
           "host-" + host["id"].get<std::string>()))
    evs.push_back({{"type", e[0].as<std::string>()}, {"at", e[1].as<std::string>()},
                   {"data", Json::parse(e[2].as<std::string>())}});
  host["events"] = evs;
  host["edge"] = nullptr;  // what this host's edge serves (none: no edge has asked for its config)
  for (auto& e : edge_states(tx))
    if (e["host_id"] == host["id"]) host["edge"] = std::move(e);
  return host;
}

void make_operator(pqxx::work& tx, const std::string& user_id) {
  auto r = tx.exec_params("UPDATE core.users SET is_operator = true WHERE id = $1 AND NOT is_operator RETURNING id",
                          user_id);
  if (r.empty()) return;
  events::append(tx, "user-" + user_id, std::nullopt,
                 {{uuid_to_string(new_uuid_v7()), "UserMadeOperator", 1, {{"user_id", user_id}},
                   {{"actor", "system"}, {"resource_kind", "user"}, {"resource_id", user_id}}}});
}

bool is_operator(pqxx::transaction_base& tx, const std::string& user_id) {
  auto r = tx.exec_params("SELECT is_operator FROM core.users WHERE id = $1", user_id);
  return !r.empty() && r[0][0].as<bool>();
}

}  // namespace platform::api
