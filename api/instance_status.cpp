// Instances, the users' side: `platform status`, `instance list` and `instance describe`
// (docs/instances.md). Reads core.instances, core.env_runtime and core.unschedulable, which the
// scheduler and the agents' reports keep current in the same transactions as their events.
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "api/instances.h"
#include "api/logs.h"
#include "api/releases.h"
#include "engine/db.h"
#include "engine/manifest/manifest.h"

namespace platform::api {

std::map<std::string, ProcessSize> process_sizes(const Json& manifest, const Json& scale) {
  std::map<std::string, ProcessSize> out;
  if (!manifest.contains("processes")) return out;
  for (const auto& [name, j] : manifest["processes"].items()) {
    auto p = manifest::process_from_json(name, j);
    ProcessSize s{p.count, p.cpu, p.memory_mib, false};
    if (scale.is_object() && scale.contains(name)) {
      const auto& o = scale[name];
      if (o.contains("count")) s.count = o["count"].get<int>();
      if (o.contains("memory_mib")) s.memory_mib = o["memory_mib"].get<std::int64_t>();
      if (o.contains("cpu")) s.cpu = o["cpu"].get<double>();
      s.scaled = true;
    }
    out[name] = s;
  }
  return out;
}

namespace {

const std::string kInstanceColumns =
    "i.id, i.name, i.process, i.release_id, r.number, i.host_id, h.name, i.desired, i.desired_reason, i.state,"
    " i.health, i.restarts, i.last_exit::text, i.state_reason, " +
    db::sql_rfc3339("i.created_at") + ", " + db::sql_rfc3339("i.started_at") + ", " + db::sql_rfc3339("i.state_at") +
    ", extract(epoch FROM now() - i.created_at)::bigint, i.cpu, i.memory_mib, coalesce(host(i.address), ''), " +
    sql_restart_due("i", "rt");
const std::string kInstanceFrom =
    " FROM core.instances i JOIN core.releases r ON r.id = i.release_id JOIN core.hosts h ON h.id = i.host_id"
    " LEFT JOIN core.env_runtime rt ON rt.env_id = i.env_id";

Json instance_json(const pqxx::row& row) {
  auto opt = [&](int k) { return row[k].is_null() ? Json() : Json(row[k].as<std::string>()); };
  return {{"id", row[0].as<std::string>()},
          {"name", row[1].as<std::string>()},
          {"process", row[2].as<std::string>()},
          {"release", {{"id", row[3].as<std::string>()}, {"number", row[4].as<int>()},
                       {"name", "v" + std::to_string(row[4].as<int>())}}},
          {"host", {{"id", row[5].as<std::string>()}, {"name", row[6].as<std::string>()}}},
          {"desired", row[7].as<std::string>()},
          {"desired_reason", row[8].as<std::string>()},
          {"state", row[9].as<std::string>()},
          {"health", row[10].as<std::string>()},
          {"restarts", row[11].as<int>()},
          {"last_exit", row[12].is_null() ? Json() : Json::parse(row[12].as<std::string>())},
          {"state_reason", row[13].as<std::string>()},
          {"created_at", row[14].as<std::string>()},
          {"started_at", opt(15)},
          {"state_at", row[16].as<std::string>()},
          {"age_seconds", row[17].as<std::int64_t>()},
          {"cpu", row[18].as<double>()},
          {"memory_mib", row[19].as<std::int64_t>()},
          {"address", row[20].as<std::string>()},  // its private address, where the edge reaches it ("": none)
          {"restart_pending", row[21].as<bool>()}};  // placed before its process's last `platform restart`
}

bool serving(const Json& i) {
  return i["state"] == "running" && (i["health"] == "healthy" || i["health"] == "none");
}

// An instance that ended, is between restarts, or fails its checks: what it wrote last is the first
// thing to read about it.
bool in_trouble(const Json& i) {
  if (i["desired"] == "stop") return false;
  return i["state"] == "failed" || i["state"] == "restarting" || i["health"] == "unhealthy" ||
         (!serving(i) && i["restarts"].get<int>() > 0 && i["last_exit"].is_object());
}

}  // namespace

Json list_instances(pqxx::transaction_base& tx, const std::string& env_id, bool all) {
  auto rows = tx.exec_params("SELECT " + kInstanceColumns + kInstanceFrom + " WHERE i.env_id = $1" +
                                 (all ? "" : " AND i.state NOT IN ('stopped', 'lost')") +
                                 " ORDER BY i.created_at DESC, i.id DESC LIMIT 1000",
                             env_id);
  Json out = Json::array();
  for (const auto& r : rows) out.push_back(instance_json(r));
  return out;
}

Json env_status(pqxx::transaction_base& tx, const std::string& env_id) {
  auto rt = tx.exec_params("SELECT release_id, scale::text FROM core.env_runtime WHERE env_id = $1", env_id);
  std::optional<Release> release;
  Json scale = Json::object();
  if (!rt.empty()) {
    if (!rt[0][0].is_null()) release = release_by_id(tx, rt[0][0].as<std::string>());
    scale = Json::parse(rt[0][1].as<std::string>());
  }
  auto instances = list_instances(tx, env_id, false);
  std::vector<std::string> troubled;
  for (const auto& i : instances)
    if (in_trouble(i)) troubled.push_back(i["id"].get<std::string>());
  const auto last = last_lines(tx, troubled);
  for (auto& i : instances) {
    auto it = last.find(i["id"].get<std::string>());
    i["last_output"] = it == last.end() ? Json() : it->second;
  }
  auto sizes = release ? process_sizes(release->manifest, scale) : std::map<std::string, ProcessSize>{};
  std::map<std::string, std::string> unschedulable;
  // Only verdicts about the env's current spec (a pass that read an older one may have written after it).
  for (const auto& r : tx.exec_params("SELECT u.process, u.reason, u.missing FROM core.unschedulable u"
                                      " JOIN core.env_runtime rt ON rt.env_id = u.env_id"
                                      " WHERE u.env_id = $1 AND u.spec_at = rt.updated_at",
                                      env_id))
    unschedulable[r[0].as<std::string>()] =
        fmt::format("{} instance{} cannot be placed: {}", r[2].as<int>(), r[2].as<int>() == 1 ? "" : "s",
                    r[1].as<std::string>());

  Json processes = Json::array(), problems = Json::array();
  std::string phase = release ? "converged" : "no_release";
  auto worsen = [&](const std::string& p) {
    static const std::vector<std::string> order = {"converged", "progressing", "unschedulable", "failed"};
    auto rank = [&](const std::string& x) { return std::find(order.begin(), order.end(), x) - order.begin(); };
    if (phase != "no_release" && rank(p) > rank(phase)) phase = p;
  };
  std::set<std::string> names;
  for (const auto& [n, s] : sizes) names.insert(n);
  for (const auto& i : instances) names.insert(i["process"].get<std::string>());
  for (const auto& name : names) {
    int current = 0, healthy = 0, outdated = 0, stopping = 0, failed = 0;
    auto s = sizes.find(name);
    for (const auto& i : instances) {
      if (i["process"] != name) continue;
      if (i["desired"] == "stop") {
        ++stopping;
        continue;
      }
      // Another release, or this one at a size `platform scale` has since changed, or placed before a
      // `platform restart`: the scheduler replaces it, so it is not current yet.
      const bool resized =
          s != sizes.end() && s->second.differs_from(i["memory_mib"].get<std::int64_t>(), i["cpu"].get<double>());
      if (!release || i["release"]["id"] != release->id || resized || i["restart_pending"].get<bool>()) {
        ++outdated;
        continue;
      }
      ++current;
      healthy += serving(i) ? 1 : 0;
      if (i["state"] == "failed") {
        ++failed;
        problems.push_back(fmt::format("{}: failed: {}", i["name"].get<std::string>(), i["state_reason"].get<std::string>()));
      } else if (i["health"] == "unhealthy") {
        problems.push_back(fmt::format("{}: unhealthy: {}", i["name"].get<std::string>(), i["state_reason"].get<std::string>()));
      } else if (i["state"] == "restarting") {
        // In its restart policy's backoff: says how it last ended and when it tries again.
        problems.push_back(fmt::format("{}: restarting: {}", i["name"].get<std::string>(), i["state_reason"].get<std::string>()));
      } else if (!serving(i) && i["restarts"].get<int>() > 0 && i["last_exit"].is_object()) {
        // Back up after a restart and not serving yet: it may well end the same way, so say how the last
        // run ended (a deploy stuck on a failing health check would otherwise show no problem at all).
        const int n = i["restarts"].get<int>();
        problems.push_back(fmt::format("{}: restarted {} time{}, not healthy yet; its last run {}", i["name"].get<std::string>(),
                                       n, n == 1 ? "" : "s", i["last_exit"].value("reason", "ended")));
      }
    }
    const int desired = s == sizes.end() ? 0 : s->second.count;
    Json p = {{"process", name}, {"desired", desired}, {"current", current}, {"healthy", healthy},
              {"outdated", outdated}, {"stopping", stopping}, {"failed", failed}};
    if (s != sizes.end()) {
      p["cpu"] = s->second.cpu;
      p["memory_mib"] = s->second.memory_mib;
      p["scaled"] = s->second.scaled;
    }
    auto u = unschedulable.find(name);
    p["unschedulable"] = u == unschedulable.end() ? Json() : Json(u->second);
    if (u != unschedulable.end()) {
      problems.push_back(name + ": " + u->second);
      worsen("unschedulable");
    }
    if (failed > 0) worsen("failed");
    if (healthy != desired || current != desired || outdated > 0 || stopping > 0) worsen("progressing");
    processes.push_back(std::move(p));
  }
  if (!release && !instances.empty()) phase = "progressing";  // stopping what ran before
  Json rel;
  if (release)
    rel = {{"id", release->id}, {"number", release->number}, {"name", "v" + std::to_string(release->number)},
           {"image", release->image.value("ref", "")}, {"digest", release->image_digest}};
  return {{"env_id", env_id},       {"release", rel},           {"phase", phase},
          {"converged", phase == "converged"}, {"processes", processes}, {"instances", instances},
          {"problems", problems}};
}

std::optional<Json> describe_instance(pqxx::transaction_base& tx, const std::string& env_id,
                                      const std::string& id_or_name) {
  auto rows = tx.exec_params("SELECT " + kInstanceColumns + kInstanceFrom + " WHERE i.env_id = $1 AND (i.id = $2 OR i.name = $2)",
                             env_id, id_or_name);
  if (rows.empty()) return std::nullopt;
  auto out = instance_json(rows[0]);
  auto evs = tx.exec_params("SELECT stream_version, type, data::text, " + db::sql_rfc3339("recorded_at") +
                                ", metadata->>'actor' FROM events WHERE stream_name = $1 ORDER BY stream_version",
                            instance_stream(out["id"].get<std::string>()));
  Json history = Json::array();
  for (const auto& e : evs)
    history.push_back({{"version", e[0].as<std::int64_t>()},
                       {"type", e[1].as<std::string>()},
                       {"data", Json::parse(e[2].as<std::string>())},
                       {"at", e[3].as<std::string>()},
                       {"actor", e[4].is_null() ? "" : e[4].as<std::string>()}});
  out["events"] = history;
  out["last_output"] = last_output(tx, out["id"].get<std::string>(), 10);
  return out;
}

}  // namespace platform::api
