// Instances, the agent's side: assignment sets, reports and secrets delivery (docs/instances.md).
#include "api/instances.h"

#include <fmt/format.h>

#include <map>

#include "api/releases.h"
#include "engine/crypto.h"
#include "engine/db.h"
#include "engine/duration.h"
#include "engine/error.h"
#include "engine/event_store.h"
#include "engine/ids.h"

namespace platform::api {

std::string instance_stream(const std::string& instance_id) { return "instance-" + instance_id; }

std::int64_t assignment_version(pqxx::transaction_base& tx, const std::string& host_id) {
  auto r = tx.exec_params("SELECT coalesce(max(assign_version), 0) FROM core.instances WHERE host_id = $1", host_id);
  return r[0][0].as<std::int64_t>();
}

Json host_assignments(pqxx::transaction_base& tx, const std::string& host_id) {
  auto rows = tx.exec_params(
      "SELECT i.id, i.name, i.org_id, i.app_id, i.env_id, i.process, i.release_id, i.cpu, i.memory_mib, i.desired,"
      " i.desired_reason, i.restarts, i.state, a.name, e.name, coalesce(host(i.address), '')"
      " FROM core.instances i JOIN core.resources a ON a.id = i.app_id JOIN core.resources e ON e.id = i.env_id"
      " WHERE i.host_id = $1 AND i.state NOT IN ('stopped', 'lost') ORDER BY i.id",
      host_id);
  std::map<std::string, Release> releases;
  std::map<std::pair<std::string, std::int64_t>, Json> configs;
  Json list = Json::array();
  for (const auto& row : rows) {
    const auto release_id = row[6].as<std::string>();
    auto rel = releases.find(release_id);
    if (rel == releases.end()) rel = releases.emplace(release_id, *release_by_id(tx, release_id)).first;
    const auto& r = rel->second;
    const auto process = row[5].as<std::string>();
    const auto env_id = row[4].as<std::string>();
    auto key = std::make_pair(env_id, r.config_version);
    auto cfg = configs.find(key);
    if (cfg == configs.end()) cfg = configs.emplace(key, vars_at(tx, "config", env_id, r.config_version)).first;
    Json env = Json::object();
    for (const auto& k : declared_keys(r.manifest, "config"))
      if (cfg->second.contains(k)) env[k] = cfg->second[k].value("value", "");
    env["PLATFORM_APP"] = row[13].as<std::string>();
    env["PLATFORM_ENV"] = row[14].as<std::string>();
    env["PLATFORM_PROCESS"] = process;
    env["PLATFORM_INSTANCE"] = row[1].as<std::string>();
    env["PLATFORM_INSTANCE_ID"] = row[0].as<std::string>();
    env["PLATFORM_RELEASE"] = "v" + std::to_string(r.number);
    Json spec = r.manifest["processes"].value(process, Json::object());
    list.push_back({{"id", row[0].as<std::string>()},
                    {"name", row[1].as<std::string>()},
                    {"org_id", row[2].as<std::string>()},
                    {"app_id", row[3].as<std::string>()},
                    {"env_id", env_id},
                    {"process", process},
                    {"release", {{"id", r.id}, {"number", r.number}}},
                    {"image", {{"registry", r.image.value("registry", "")},
                               {"repository", r.image.value("repository", "")},
                               {"digest", r.image_digest}}},
                    {"process_spec", spec},
                    {"cpu", row[7].as<double>()},
                    {"memory_mib", row[8].as<std::int64_t>()},
                    {"env", env},
                    {"secrets", !declared_keys(r.manifest, "secrets").empty() && r.secrets_version > 0},
                    {"desired", row[9].as<std::string>()},
                    {"desired_reason", row[10].as<std::string>()},
                    {"restarts", row[11].as<int>()},
                    {"state", row[12].as<std::string>()},
                    {"address", row[15].as<std::string>()}});
  }
  return {{"version", assignment_version(tx, host_id)}, {"instances", list}};
}

namespace {

// What each report does to the instance's row. nullptr: unchanged.
struct ReportEffect {
  const char* type;
  const char* state;
  const char* health;
};
constexpr ReportEffect kEffects[] = {
    {"InstancePulling", "starting", nullptr},   {"InstanceStarted", "running", nullptr},
    {"InstanceHealthy", nullptr, "healthy"},    {"InstanceUnhealthy", nullptr, "unhealthy"},
    {"InstanceExited", "exited", nullptr},      {"InstanceStartFailed", "exited", nullptr},
    {"InstanceRestarting", "restarting", nullptr}, {"InstanceFailed", "failed", nullptr},
    {"InstanceStopped", "stopped", "unknown"},
};

const ReportEffect* effect_of(const std::string& type) {
  for (const auto& e : kEffects)
    if (type == e.type) return &e;
  return nullptr;
}

void check_report(const Json& r, std::size_t i) {
  auto bad = [&](const std::string& what) {
    throw PlatformError(ErrorCode::invalid_request, fmt::format("reports[{}]: {}", i, what),
                        "Each report is {event_id, instance_id, seq, type, at, data}.");
  };
  if (!r.is_object()) bad("is not an object");
  for (const char* k : {"event_id", "instance_id", "type", "at"})
    if (!r.contains(k) || !r[k].is_string()) bad(std::string(k) + " must be a string");
  if (!is_uuid(r["event_id"].get<std::string>())) bad("event_id is not a UUID");
  if (!is_utc_time(r["at"].get<std::string>())) bad("at must be a UTC time such as 2026-11-22T06:31:55.830339Z");
  if (!r.contains("seq") || !r["seq"].is_number_integer() || r["seq"].get<std::int64_t>() <= 0)
    bad("seq must be a positive integer");
  if (!effect_of(r["type"].get<std::string>())) bad("unknown type " + r["type"].get<std::string>().substr(0, 60));
  if (!r.contains("data") || !r["data"].is_object()) bad("data must be an object");
}

}  // namespace

ReportsOutcome apply_reports(pqxx::work& tx, const std::string& host_id, const std::string& host_name,
                             const Json& reports) {
  if (!reports.is_array() || reports.size() > 500)
    throw PlatformError(ErrorCode::invalid_request, "reports must be an array of at most 500",
                        "platform-agent sends its outbox in batches.");
  for (std::size_t i = 0; i < reports.size(); ++i) check_report(reports[i], i);
  ReportsOutcome out;
  for (const auto& r : reports) {
    const auto id = r["instance_id"].get<std::string>();
    const auto event_id = r["event_id"].get<std::string>();
    auto row = tx.exec_params("SELECT host_id, org_id, env_id, report_seq, state, name FROM core.instances WHERE id = $1 FOR UPDATE",
                              id);
    if (row.empty() || row[0][0].as<std::string>() != host_id) {
      out.rejected.push_back({{"event_id", event_id}, {"reason", "instance " + id.substr(0, 60) + " is not on this host"}});
      continue;
    }
    const auto type = r["type"].get<std::string>();
    Json data = r["data"];
    data["instance_id"] = id;
    data["host_id"] = host_id;
    data["reported_at"] = r["at"];
    Json meta = {{"actor", "host:" + host_name}, {"org_id", row[0][1].as<std::string>()},
                 {"resource_kind", "instance"},  {"resource_id", id},
                 {"resource_name", row[0][5].as<std::string>()}, {"parent_id", row[0][2].as<std::string>()}};
    auto appended = events::append(tx, instance_stream(id), std::nullopt, {{event_id, type, 1, data, meta}});
    if (appended.front().duplicate) {
      ++out.duplicates;
      continue;
    }
    ++out.applied;
    const auto seq = r["seq"].get<std::int64_t>();
    const auto state = row[0][4].as<std::string>();
    if (seq <= row[0][3].as<std::int64_t>() || state == "stopped") continue;  // older than what is known
    if (state == "lost" && type != "InstanceStopped") continue;                // the scheduler gave up on it
    const auto* e = effect_of(type);
    const auto reason = data.value("reason", "");
    std::string health = e->health ? e->health : "";
    if (type == "InstanceStarted") health = data.value("health_check", false) ? "starting" : "none";
    tx.exec_params(
        "UPDATE core.instances SET report_seq = $2, state_at = now(),"
        " state = coalesce($3, state), health = coalesce($4, health),"
        " state_reason = $5, restarts = coalesce($6, restarts),"
        " started_at = CASE WHEN $7 THEN now() ELSE started_at END,"
        " last_exit = coalesce($8::jsonb, last_exit)"
        " WHERE id = $1",
        id, seq, e->state ? std::optional<std::string>(e->state) : std::nullopt,
        health.empty() ? std::nullopt : std::optional<std::string>(health),
        reason,
        data.contains("restarts") && data["restarts"].is_number_integer() ? std::optional<int>(data["restarts"].get<int>())
                                                                           : std::nullopt,
        type == "InstanceStarted",
        type == "InstanceExited" || type == "InstanceStartFailed" ? std::optional<std::string>(data.dump())
                                                                   : std::nullopt);
  }
  return out;
}

std::string instance_secrets_file(pqxx::transaction_base& tx, const std::string& host_id,
                                  const std::string& instance_id, const std::vector<secrets::Key>& keys) {
  auto row = tx.exec_params("SELECT env_id, release_id FROM core.instances WHERE id = $1 AND host_id = $2"
                            " AND state NOT IN ('stopped', 'lost')",
                            instance_id, host_id);
  if (row.empty())
    throw PlatformError(ErrorCode::not_found, "instance " + instance_id.substr(0, 60) + " is not assigned to this host",
                        "An agent fetches the secrets of its own instances only.");
  const auto env_id = row[0][0].as<std::string>();
  auto r = release_by_id(tx, row[0][1].as<std::string>());
  auto sealed = vars_at(tx, "secrets", env_id, r->secrets_version);
  std::map<std::string, std::string> values;
  for (const auto& name : declared_keys(r->manifest, "secrets")) {
    if (!sealed.contains(name)) continue;
    const auto& s = sealed[name];
    values[name] = secrets::open(keys, {s.value("key_id", ""), s.value("nonce", ""), s.value("ciphertext", "")},
                                 env_id + "/" + name);
  }
  return secrets::encode_file(values);
}

std::string sql_restart_due(const std::string& i, const std::string& rt) {
  return "(" + i + ".restart_asked OR coalesce(" + i + ".created_at < (" + rt + ".restarts->>" + i +
         ".process)::timestamptz, false))";
}

std::map<std::string, int> request_restart(pqxx::work& tx, const std::string& env_id,
                                           const std::vector<std::string>& processes) {
  Json names = processes;
  // One time for all: now(), the transaction's start, so an instance placed after this commits is new.
  tx.exec_params(
      "UPDATE core.env_runtime SET restarts = restarts || (SELECT coalesce(jsonb_object_agg(p, now()), '{}'::jsonb)"
      " FROM jsonb_array_elements_text($2::jsonb) AS p), updated_at = now() WHERE env_id = $1",
      env_id, names.dump());
  std::map<std::string, int> out;
  for (const auto& p : processes) out[p] = 0;
  for (const auto& r : tx.exec_params("SELECT i.process, count(*) FROM core.instances i"
                                      " JOIN core.env_runtime rt ON rt.env_id = i.env_id"
                                      " WHERE i.env_id = $1 AND i.desired = 'run' AND i.state NOT IN ('stopped', 'lost')"
                                      " AND " + sql_restart_due("i", "rt") + " GROUP BY i.process",
                                      env_id))
    out[r[0].as<std::string>()] = r[1].as<int>();
  return out;
}

void set_env_runtime(pqxx::work& tx, const std::string& env_id, const std::string& org_id,
                     const std::string& release_id, const std::optional<Json>& scale) {
  if (!release_id.empty())
    tx.exec_params("INSERT INTO core.env_runtime (env_id, org_id, release_id) VALUES ($1, $2, $3)"
                   " ON CONFLICT (env_id) DO UPDATE SET release_id = $3, updated_at = now()",
                   env_id, org_id, release_id);
  if (scale)
    tx.exec_params("UPDATE core.env_runtime SET scale = $2::jsonb, updated_at = now() WHERE env_id = $1", env_id,
                   scale->dump());
  tx.exec_params("DELETE FROM core.unschedulable WHERE env_id = $1", env_id);
}

}  // namespace platform::api
