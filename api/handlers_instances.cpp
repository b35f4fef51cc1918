// Instances (docs/instances.md). For users: an env's status, its instances, one instance's story, and
// scale. For platform-agent (host credential): its assignment set as a level-triggered long poll, its
// batched reports, and the secrets file of an instance it runs.
#include <fmt/format.h>

#include "api/body.h"
#include "api/env_vars.h"
#include "api/exposure.h"
#include "api/hosts.h"
#include "api/instances.h"
#include "api/logs.h"
#include "api/metrics.h"
#include "api/mutation.h"
#include "api/path.h"
#include "api/releases.h"
#include "api/routes.h"
#include "engine/crypto.h"
#include "engine/db.h"
#include "engine/duration.h"
#include "engine/ids.h"

namespace platform::api {
namespace {

Response get_status(Context& ctx, const Request& req, Principal& p, const Params& params) {
  auto chain = env_chain(ctx, p, params);
  // traffic=false: only the rollout (what `wait` polls while it moves, several times a second), without
  // the look at what is exposed and what each edge serves.
  const bool traffic = req.param("traffic") != "false";
  auto status = ctx.pool.read([&](pqxx::transaction_base& tx) {
    auto st = env_status(tx, chain.back().id);
    if (traffic) st.update(env_traffic(tx, chain.back().id, ctx.edge_tls_listen));  // apart from the rollout
    return st;
  });
  status["path"] = path_of(chain);
  status["env"] = chain.back().name;
  return json_response(200, status);
}

Response get_instances(Context& ctx, const Request& req, Principal& p, const Params& params) {
  auto chain = env_chain(ctx, p, params);
  const bool all = req.param("all") == "true";
  auto list = ctx.pool.read([&](pqxx::transaction_base& tx) { return list_instances(tx, chain.back().id, all); });
  return json_response(200, {{"env_id", chain.back().id}, {"path", path_of(chain)}, {"instances", list},
                             {"count", list.size()}});
}

Response get_instance(Context& ctx, const Request&, Principal& p, const Params& params) {
  auto chain = env_chain(ctx, p, params);
  const auto& ref = params.at("instance");
  auto j = ctx.pool.read([&](pqxx::transaction_base& tx) { return describe_instance(tx, chain.back().id, ref); });
  if (!j)
    throw PlatformError(ErrorCode::not_found,
                        "env " + chain.back().name + " has no instance \"" + ref.substr(0, 80) + "\"",
                        "List them with `platform instance list --all " + env_flags(chain) + "`.");
  (*j)["path"] = path_of(chain);
  return json_response(200, *j);
}

// {"processes": {"web": {"count": 3, "memory_mib": 512, "cpu": 0.5}}}: each field optional.
Json checked_scale(const Json& body) {
  auto bad = [](const std::string& what) {
    throw PlatformError(ErrorCode::invalid_request, what,
                        "e.g. {\"processes\": {\"web\": {\"count\": 3, \"memory_mib\": 512}}}");
  };
  if (!body.contains("processes") || !body["processes"].is_object() || body["processes"].empty())
    bad("processes must be a non-empty object of process -> {count, memory_mib, cpu}");
  for (const auto& [name, o] : body["processes"].items()) {
    if (!o.is_object() || o.empty()) bad("processes." + name + " must be an object with count, memory_mib or cpu");
    for (const auto& [k, v] : o.items()) {
      if (k == "count") {
        if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > 100)
          bad("processes." + name + ".count must be an integer from 0 to 100");
      } else if (k == "memory_mib") {
        if (!v.is_number_integer() || v.get<std::int64_t>() < 16 || v.get<std::int64_t>() > 262144)
          bad("processes." + name + ".memory_mib must be an integer from 16 to 262144");
      } else if (k == "cpu") {
        if (!v.is_number() || v.get<double>() < 0.01 || v.get<double>() > 64)
          bad("processes." + name + ".cpu must be a number from 0.01 to 64");
      } else {
        bad("processes." + name + " has an unknown field " + k.substr(0, 40) + " (count, memory_mib, cpu)");
      }
    }
  }
  return body["processes"];
}

// The env's release and scale, with its runtime row locked (one change to what runs at a time); an env
// with no release has nothing to `verb`.
struct LockedRuntime {
  Release release;
  Json scale;
};
LockedRuntime lock_runtime(pqxx::work& tx, const std::vector<Resolved>& chain, const std::string& verb) {
  const auto& env = chain.back();
  auto rt = tx.exec_params("SELECT release_id, scale::text FROM core.env_runtime WHERE env_id = $1 FOR UPDATE", env.id);
  if (rt.empty() || rt[0][0].is_null())
    throw PlatformError(ErrorCode::precondition_failed, "env " + env.name + " has no release to " + verb,
                        "Deploy first: platform deploy " + env_flags(chain));
  return {*release_by_id(tx, rt[0][0].as<std::string>()), Json::parse(rt[0][1].as<std::string>())};
}

[[noreturn]] void no_such_process(const Release& release, const std::map<std::string, ProcessSize>& sizes,
                                  const std::string& name) {
  std::string known;
  for (const auto& [n, s] : sizes) known += (known.empty() ? "" : ", ") + n;
  throw PlatformError(ErrorCode::invalid_request,
                      fmt::format("release v{} has no process \"{}\"", release.number, name.substr(0, 60)),
                      "Its processes: " + known + ".");
}

Response post_scale(Context& ctx, const Request& req, Principal& p, const Params& params) {
  auto body = parse_body(req.body, {{"processes", FieldType::object, true}});
  auto changes = checked_scale(body);
  auto chain = env_chain(ctx, p, params);
  const auto env = chain.back();
  const auto path = path_of(chain);
  ctx.metrics.mutations_total++;
  return run_mutation(ctx, req, p, "env.scale", 200, [&](pqxx::work& tx, const Actor& actor) {
    auto [rel, scale] = lock_runtime(tx, chain, "scale");
    const auto* release = &rel;
    const auto before = process_sizes(release->manifest, scale);
    Json diff = Json::array();
    for (const auto& [name, o] : changes.items()) {
      if (!before.count(name)) no_such_process(*release, before, name);
      Json& s = scale[name];
      if (!s.is_object()) s = Json::object();
      for (const auto& [k, v] : o.items()) s[k] = v;
    }
    const auto after = process_sizes(release->manifest, scale);
    for (const auto& [name, o] : changes.items()) {
      const auto& b = before.at(name);
      const auto& a = after.at(name);
      if (a.count != b.count)
        diff.push_back({{"process", name}, {"key", "count"}, {"from", b.count}, {"to", a.count},
                        {"summary", fmt::format("{} count {} -> {}", name, b.count, a.count)}});
      if (a.memory_mib != b.memory_mib)
        diff.push_back({{"process", name}, {"key", "memory_mib"}, {"from", b.memory_mib}, {"to", a.memory_mib},
                        {"summary", fmt::format("{} memory {} -> {} MiB", name, b.memory_mib, a.memory_mib)}});
      if (a.cpu != b.cpu)
        diff.push_back({{"process", name}, {"key", "cpu"}, {"from", b.cpu}, {"to", a.cpu},
                        {"summary", fmt::format("{} cpu {:g} -> {:g}", name, b.cpu, a.cpu)}});
    }
    CommandReceipt r;
    Json next = Json::array({"platform status " + env_flags(chain), "platform wait " + env_flags(chain)});
    Json resource = env_resource_json(env, path);
    if (diff.empty()) {
      r.duplicate = true;
      r.receipt = {{"resource", resource}, {"diff", diff}, {"events", Json::array()}, {"next", next},
                   {"note", "nothing changed: every process already had that size"}};
      return r;
    }
    set_env_runtime(tx, env.id, env.org_id, "", scale);
    Json data = {{"env_id", env.id}, {"release_id", release->id}, {"changes", changes}, {"scale", scale}};
    CommandOutcome out;
    out.resource_id = env.id;
    out.appended = events::append(tx, "scale-" + env.id, std::nullopt,
                                  {{uuid_to_string(new_uuid_v7()), "ProcessScaled", 1, data,
                                    event_metadata(actor, env)}});
    r.last = out.last();
    Json sizes = Json::object();
    for (const auto& [name, s] : after)
      sizes[name] = {{"count", s.count}, {"memory_mib", s.memory_mib}, {"cpu", s.cpu}, {"scaled", s.scaled}};
    r.receipt = {{"resource", resource}, {"processes", sizes}, {"diff", diff},
                 {"events", out.events_json("scale-" + env.id)}, {"next", next}};
    return r;
  });
}

// {"processes": ["web"]} (absent or empty: every process of the env's release): a rolling restart.
Response post_restart(Context& ctx, const Request& req, Principal& p, const Params& params) {
  auto body = parse_body(req.body, {{"processes", FieldType::array_of_strings}});
  auto chain = env_chain(ctx, p, params);
  const auto env = chain.back();
  const auto path = path_of(chain);
  ctx.metrics.mutations_total++;
  return run_mutation(ctx, req, p, "env.restart", 200, [&](pqxx::work& tx, const Actor& actor) {
    const auto [rel, scale] = lock_runtime(tx, chain, "restart");
    const auto* release = &rel;
    const auto sizes = process_sizes(release->manifest, scale);
    std::vector<std::string> processes;
    for (const auto& name : body.value("processes", Json::array())) {
      const auto n = name.get<std::string>();
      if (!sizes.count(n)) no_such_process(*release, sizes, n);
      if (std::find(processes.begin(), processes.end(), n) == processes.end()) processes.push_back(n);
    }
    if (processes.empty())
      for (const auto& [k, s] : sizes) processes.push_back(k);
    const auto replaced = request_restart(tx, env.id, processes);
    Json diff = Json::array(), counts = Json::object();
    for (const auto& [name, n] : replaced) {
      counts[name] = n;
      diff.push_back({{"process", name}, {"key", "restart"}, {"instances", n},
                      {"summary", fmt::format("{}: {} instance{} replaced, each once a new one is healthy", name, n,
                                              n == 1 ? "" : "s")}});
    }
    Json data = {{"env_id", env.id}, {"release_id", release->id}, {"processes", processes}, {"instances", counts}};
    CommandOutcome out;
    out.resource_id = env.id;
    out.appended = events::append(tx, "restart-" + env.id, std::nullopt,
                                  {{uuid_to_string(new_uuid_v7()), "EnvRestartRequested", 1, data,
                                    event_metadata(actor, env)}});
    CommandReceipt r;
    r.last = out.last();
    r.receipt = {{"resource", env_resource_json(env, path)},
                 {"release", release_summary(*release)},
                 {"diff", diff},
                 {"events", out.events_json("restart-" + env.id)},
                 {"next", Json::array({"platform wait " + env_flags(chain), "platform status " + env_flags(chain)})}};
    return r;
  });
}

// One instance replaced by a new one (it stops once the new one is healthy): `platform instance restart`.
Response post_instance_restart(Context& ctx, const Request& req, Principal& p, const Params& params) {
  parse_body(req.body, {});
  auto chain = env_chain(ctx, p, params);
  const auto env = chain.back();
  const auto& ref = params.at("instance");
  ctx.metrics.mutations_total++;
  return run_mutation(ctx, req, p, "instance.restart", 200, [&](pqxx::work& tx, const Actor& actor) {
    lock_runtime(tx, chain, "restart");
    auto rows = tx.exec_params(
        "SELECT id, name, process, desired, state, restart_asked FROM core.instances"
        " WHERE env_id = $1 AND (id = $2 OR name = $2) FOR UPDATE",
        env.id, ref);
    if (rows.empty())
      throw PlatformError(ErrorCode::not_found, "env " + env.name + " has no instance \"" + ref.substr(0, 80) + "\"",
                          "List them with `platform instance list " + env_flags(chain) + "`.");
    const auto id = rows[0][0].as<std::string>(), name = rows[0][1].as<std::string>();
    const auto state = rows[0][4].as<std::string>();
    if (rows[0][3].as<std::string>() == "stop" || state == "stopped" || state == "lost")
      throw PlatformError(ErrorCode::precondition_failed,
                          "instance " + name + " is " + (state == "stopped" || state == "lost" ? state : "stopping") +
                              ": there is nothing to restart",
                          "The scheduler places what the process lacks; `platform status " + env_flags(chain) +
                              "` shows what runs.");
    CommandReceipt r;
    Json resource = {{"kind", "instance"}, {"id", id}, {"name", name}, {"path", path_of(chain) + "/instance/" + name}};
    Json next = Json::array({"platform wait " + env_flags(chain), "platform instance describe " + name + " " + env_flags(chain)});
    if (rows[0][5].as<bool>()) {
      r.duplicate = true;
      r.receipt = {{"resource", resource}, {"diff", Json::array()}, {"events", Json::array()}, {"next", next},
                   {"note", "nothing changed: " + name + " is already to be replaced"}};
      return r;
    }
    tx.exec_params("UPDATE core.instances SET restart_asked = true WHERE id = $1", id);
    CommandOutcome out;
    out.resource_id = id;
    out.appended = events::append(
        tx, instance_stream(id), std::nullopt,
        {{uuid_to_string(new_uuid_v7()), "InstanceRestartRequested", 1,
          Json{{"instance_id", id}, {"name", name}, {"process", rows[0][2].as<std::string>()},
               {"reason", "asked by " + (p.user_name.empty() ? p.user_id : p.user_name) +
                              ": a new instance replaces it, and it stops once that one is healthy"}},
          event_metadata(actor, env.org_id, "instance", id, env.id, name)}});
    r.last = out.last();
    r.receipt = {{"resource", resource},
                 {"diff", Json::array({{{"key", "restart"},
                                        {"summary", name + ": replaced by a new instance, stopped once that one is healthy"}}})},
                 {"events", out.events_json(instance_stream(id))},
                 {"next", next}};
    return r;
  });
}

Response get_logs(Context& ctx, const Request& req, Principal& p, const Params& params) {
  auto chain = env_chain(ctx, p, params);
  LogQuery q;
  q.env_id = chain.back().id;
  q.cursor = req.param("after");
  q.process = req.param("process");
  q.instance = req.param("instance");
  q.since = normalize_time(req.param("since"), "since");
  q.until = normalize_time(req.param("until"), "until");
  if (auto s = req.param("source"); !s.empty()) {
    if (s != "app" && s != "system" && s != "all")
      throw PlatformError(ErrorCode::invalid_request, "source must be app, system or all",
                          "app: what the instances wrote; system: the platform's events about them.");
    q.source = s;
  }
  if (auto l = req.param("limit"); !l.empty()) {
    if (l.size() > 4 || l.find_first_not_of("0123456789") != std::string::npos || std::stoi(l) < 1 || std::stoi(l) > 5000)
      throw PlatformError(ErrorCode::invalid_request, "limit must be from 1 to 5000", "e.g. limit=500");
    q.limit = std::stoi(l);
  }
  if (auto t = req.param("tail"); !t.empty()) {
    if (t.size() > 4 || t.find_first_not_of("0123456789") != std::string::npos || std::stoi(t) < 1 || std::stoi(t) > 5000)
      throw PlatformError(ErrorCode::invalid_request, "tail must be from 1 to 5000", "e.g. tail=100: the newest 100 lines");
    q.tail = std::stoi(t);
  }
  auto out = ctx.pool.read([&](pqxx::transaction_base& tx) {
    // A filter naming no instance or process the env ever had is a typo, not "no logs": say so. (Instance
    // rows are kept after they stop, so every name that ever logged here is found.)
    if (!q.instance.empty() &&
        tx.exec_params("SELECT 1 FROM core.instances WHERE env_id = $1 AND (name = $2 OR id = $2) LIMIT 1", q.env_id,
                       q.instance).empty())
      throw PlatformError(ErrorCode::not_found, "env " + chain.back().name + " has no instance " + q.instance,
                          "List its instances, stopped ones too: platform instance list --all " + env_flags(chain));
    if (!q.process.empty() &&
        tx.exec_params("SELECT 1 FROM core.instances WHERE env_id = $1 AND process = $2 LIMIT 1", q.env_id, q.process)
            .empty())
      throw PlatformError(ErrorCode::not_found, "env " + chain.back().name + " has never run process " + q.process,
                          "`platform status " + env_flags(chain) + "` shows its processes.");
    return read_logs(tx, q);
  });
  out["env_id"] = q.env_id;
  return json_response(200, out);
}

// --- platform-agent ---

Response post_logs(Context& ctx, const Request& req) {
  auto body = parse_body(req.body, {{"lines", FieldType::array_of_objects, true}});
  const auto credential = host_credential(req);
  auto out = ctx.pool.transact([&](pqxx::work& tx) {
    auto host = authenticate_host(tx, credential);
    return store_log_lines(tx, host.id, body["lines"]);
  });
  return json_response(200, out);
}

WatchPlan watch_assignments(Context& ctx, const Request& req) {
  const auto credential = host_credential(req);
  auto host = ctx.pool.read([&](pqxx::transaction_base& tx) { return authenticate_host(tx, credential); });
  const auto [after, wait] = versioned_wait(req, "an assignment version");
  WatchPlan plan;
  plan.wait = wait;
  ctx.metrics.watch_requests_total++;
  plan.level = [&ctx, host, after](bool last) -> std::optional<Response> {
    return ctx.pool.read([&](pqxx::transaction_base& tx) -> std::optional<Response> {
      if (!last && assignment_version(tx, host.id) == after) return std::nullopt;
      auto j = host_assignments(tx, host.id);
      j["host_id"] = host.id;
      j["changed"] = j["version"].get<std::int64_t>() != after;
      return json_response(200, j);
    });
  };
  return plan;
}

Response post_reports(Context& ctx, const Request& req) {
  auto body = parse_body(req.body, {{"reports", FieldType::array_of_objects, true}});
  const auto credential = host_credential(req);
  auto out = ctx.pool.transact([&](pqxx::work& tx) {
    auto host = authenticate_host(tx, credential);
    return apply_reports(tx, host.id, host.name, body["reports"]);
  });
  return json_response(200, {{"applied", out.applied}, {"duplicates", out.duplicates}, {"rejected", out.rejected}});
}

Response get_instance_secrets(Context& ctx, const Request& req) {
  const auto credential = host_credential(req);
  // The path is /v1/agent/instances/{instance}/secrets; public handlers get no params.
  const auto prefix = std::string("/v1/agent/instances/");
  const auto id = req.path.substr(prefix.size(), req.path.size() - prefix.size() - std::string("/secrets").size());
  if (ctx.secret_keys.empty())
    throw PlatformError(ErrorCode::unavailable, "secrets are not configured on this server",
                        "Start platformd serve with --secrets-key FILE (platformd dev creates one).");
  auto file = ctx.pool.read([&](pqxx::transaction_base& tx) {
    auto host = authenticate_host(tx, credential);
    return instance_secrets_file(tx, host.id, id, ctx.secret_keys);
  });
  return json_response(200, {{"instance_id", id}, {"format", "platform-secrets 1"}, {"file", base64_encode(file)}});
}

// Before it stops an instance it was asked to stop, the agent asks whether the edge on its host has stopped
// sending it new connections (docs/instances.md#rollouts).
Response get_instance_drain(Context& ctx, const Request& req) {
  const auto credential = host_credential(req);
  // The path is /v1/agent/instances/{instance}/drain; public handlers get no params.
  const auto prefix = std::string("/v1/agent/instances/");
  const auto id = req.path.substr(prefix.size(), req.path.size() - prefix.size() - std::string("/drain").size());
  return json_response(200, ctx.pool.read([&](pqxx::transaction_base& tx) {
    auto host = authenticate_host(tx, credential);
    auto out = instance_drain(tx, host.id, id, ctx.edge_tls_listen);
    out["instance_id"] = id;
    return out;
  }));
}

}  // namespace

void add_instance_routes(std::vector<Route>& out) {
  const std::string base = "/v1/orgs/{org}/projects/{project}/apps/{app}/envs/{env}";
  out.push_back({"GET", base + "/status",
                 "An env's status: release, desired and current counts per process, instances, and what is not "
                 "converging and why",
                 get_status, {}, {}});
  out.push_back({"GET", base + "/instances", "An env's instances (all=true: stopped ones too)", get_instances, {}, {}});
  out.push_back({"GET", base + "/instances/{instance}", "One instance with its events: why it was placed, restarted, stopped",
                 get_instance, {}, {}});
  out.push_back({"POST", base + "/scale", "Set the count, memory or CPU of an env's processes (over the manifest's)",
                 post_scale, {}, {}});
  out.push_back({"POST", base + "/restart",
                 "A rolling restart of an env's instances (all processes, or those named): each is replaced by a "
                 "new one, and stops once the new one is healthy",
                 post_restart, {}, {}});
  out.push_back({"POST", base + "/instances/{instance}/restart",
                 "Replace one instance by a new one; it stops once the new one is healthy",
                 post_instance_restart, {}, {}});
  out.push_back({"GET", base + "/logs",
                 "An env's logs by cursor: what its instances wrote (app) and the platform's events about them "
                 "(system)",
                 get_logs, {}, {}});
  out.push_back({"POST", "/v1/agent/logs", "A batch of instance log lines (platform-agent, host credential)", {}, {},
                 post_logs});
  out.push_back({"GET", "/v1/agent/assignments",
                 "A host's assignment set, level-triggered long poll by version (platform-agent, host credential)", {},
                 {}, {}, watch_assignments});
  out.push_back({"POST", "/v1/agent/reports", "A batch of an agent's instance reports (platform-agent, host credential)",
                 {}, {}, post_reports});
  out.push_back({"GET", "/v1/agent/instances/{instance}/drain",
                 "Whether the edge on the host no longer sends new connections to an instance asked to stop "
                 "(platform-agent, host credential)",
                 {}, {}, get_instance_drain});
  out.push_back({"GET", "/v1/agent/instances/{instance}/secrets",
                 "The secrets file of an instance the host runs (platform-agent, host credential)", {}, {},
                 get_instance_secrets});
}

}  // namespace platform::api
