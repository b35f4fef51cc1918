// `platform exec` (docs/instances.md#exec): a command run inside a running instance. The user's request
// is a long poll: it records the command (core.exec_requests, and InstanceExecRequested on the instance's
// stream, so the trail says who ran what), then waits, holding no database connection, until the agent
// of the instance's host has run it and posted the result (InstanceExecFinished wakes the wait).
#include <fmt/format.h>

#include "api/body.h"
#include "api/env_vars.h"
#include "api/exec_common.h"
#include "api/hosts.h"
#include "api/instances.h"
#include "api/path.h"
#include "api/resources.h"
#include "api/routes.h"
#include "engine/crypto.h"
#include "engine/db.h"
#include "engine/duration.h"
#include "engine/event_store.h"
#include "engine/ids.h"

namespace platform::api {
namespace {

constexpr std::size_t kMaxOutput = 1 << 20;     // what an exec keeps of its command's output
constexpr auto kPickUp = std::chrono::seconds(15);  // the agent's time to take a command, beyond its timeout
constexpr std::size_t kMaxInput = 512 << 10;     // its stdin (base64 of it fits in a request body)

struct ExecAsk {
  Json command = Json::array();
  Json env = Json::object();
  std::optional<std::string> input;  // its stdin
  std::chrono::milliseconds timeout{30'000};
};

ExecAsk checked_exec(const Json& body) {
  auto bad = [](const std::string& what, const std::string& hint) {
    throw PlatformError(ErrorCode::invalid_request, what, hint);
  };
  const std::string eg = "e.g. {\"command\": [\"/bin/sh\", \"-c\", \"ls /app\"], \"timeout\": \"30s\"}";
  ExecAsk x;
  x.command = body["command"];
  check_exec_command(x.command, eg);
  if (body.contains("env")) {
    x.env = body["env"];
    check_exec_env(x.env, eg);
  }
  if (body.contains("stdin")) {
    x.input = base64_decode(body["stdin"].get<std::string>());
    if (!x.input) bad("stdin must be base64", "e.g. \"stdin\": \"aGVsbG8K\"");
    if (x.input->size() > kMaxInput) bad("stdin may hold at most 512 KiB", "Put larger input in a file of the image, or let the command fetch it.");
  }
  if (body.contains("timeout")) {
    auto d = parse_duration(body["timeout"].get<std::string>());
    if (!d || *d < std::chrono::seconds(1) || *d > std::chrono::minutes(10))
      bad("timeout must be a duration from 1s to 10m", "e.g. \"timeout\": \"2m\"");
    x.timeout = *d;
  }
  return x;
}

struct Asked {
  std::string exec_id;
  ExecTarget target;  // where it runs
};

Json result_json(const pqxx::row& r, const Asked& a) {
  const auto output = r["output"].is_null() ? std::string() : pqxx::binarystring(r["output"]).str();
  return {{"exec_id", a.exec_id},
          {"instance_id", a.target.instance_id},
          {"instance", a.target.instance_name},
          {"exit_code", r["exit_code"].is_null() ? Json() : Json(r["exit_code"].as<int>())},
          {"timed_out", !r["timed_out"].is_null() && r["timed_out"].as<bool>()},
          {"output", base64_encode(output)},
          {"truncated", !r["truncated"].is_null() && r["truncated"].as<bool>()},
          {"duration_ms", r["duration_ms"].is_null() ? Json() : Json(r["duration_ms"].as<std::int64_t>())}};
}

WatchPlan post_exec(Context& ctx, const Request& req, Principal& p, const Params& params) {
  auto body = parse_body(req.body, {{"command", FieldType::array_of_strings, true},
                                    {"env", FieldType::object_of_strings, false},
                                    {"timeout", FieldType::string, false},
                                    {"stdin", FieldType::string, false}});
  const auto ask = checked_exec(body);
  const auto chain = env_chain(ctx, p, params);
  const auto& env = chain.back();
  Asked a;
  a.exec_id = new_id("exec");
  ctx.pool.transact([&](pqxx::work& tx) {
    a.target = running_exec_target(tx, chain, params.at("instance"));
    const auto& target = a.target;
    tx.exec_params(
        "INSERT INTO core.exec_requests (id, org_id, env_id, instance_id, host_id, command, env, timeout_ms, requested_by,"
        " stdin) SELECT $1, org_id, env_id, id, host_id, $3::jsonb, $4::jsonb, $5, $6, CASE WHEN $8 THEN $7::bytea END"
        " FROM core.instances WHERE id = $2",
        a.exec_id, a.target.instance_id, ask.command.dump(), ask.env.dump(), static_cast<int>(ask.timeout.count()), p.user_id,
        pqxx::binarystring(ask.input.value_or("")), ask.input.has_value());
    Actor actor{p.user_id, req.request_id, new_id("op"), "instance.exec", p.user_name};
    const auto line = shell_line(ask.command);
    Json names = Json::array();
    for (const auto& [k, _] : ask.env.items()) names.push_back(k);  // the values may be anything: names only
    events::append(tx, instance_stream(a.target.instance_id), std::nullopt,
                   {{uuid_to_string(new_uuid_v7()), "InstanceExecRequested", 1,
                     Json{{"exec_id", a.exec_id}, {"command", ask.command}, {"env", names},
                          {"stdin_bytes", ask.input ? ask.input->size() : 0},
                          {"timeout_ms", ask.timeout.count()},
                          {"reason", p.user_name + " runs: " + line.substr(0, 300)}},
                     event_metadata(actor, target.org_id, "instance", a.target.instance_id, env.id,
                                    a.target.instance_name)}});
  });
  WatchPlan plan;
  plan.wait = ask.timeout + kPickUp;
  const auto request_id = req.request_id;
  plan.level = [&ctx, a, request_id](bool last) -> std::optional<Response> {
    // Read-only while it waits: a write would ring the pool's doorbell on every wake-up.
    auto read = [&](auto& tx) {
      return tx.exec_params(
          "SELECT exit_code, timed_out, output, truncated, error, taken_at IS NOT NULL AS taken,"
          " finished_at IS NOT NULL AS finished,"
          " (extract(epoch FROM finished_at - taken_at) * 1000)::bigint AS duration_ms"
          " FROM core.exec_requests WHERE id = $1",
          a.exec_id);
    };
    auto answer = [&](const pqxx::result& r, pqxx::work* tx) -> std::optional<Response> {
      if (r.empty()) return problem({ErrorCode::internal, "the exec request is gone", ""}, request_id);
      const auto& row = r[0];
      if (row["finished"].as<bool>()) {
        if (!row["error"].is_null())
          return problem({ErrorCode::precondition_failed,
                          "the agent on host " + a.target.host_name + " could not run the command: " +
                              row["error"].as<std::string>(),
                          "Check the instance with `platform instance describe " + a.target.instance_name + "`."},
                         request_id);
        return json_response(200, result_json(row, a));
      }
      if (!tx) return std::nullopt;
      // Never taken: it must not run later, when nobody waits for it.
      if (!row["taken"].as<bool>() &&
          tx->exec_params("UPDATE core.exec_requests SET finished_at = now(), error = 'not taken in time'"
                          " WHERE id = $1 AND taken_at IS NULL",
                          a.exec_id)
                  .affected_rows() == 1) {
        return problem({ErrorCode::unavailable,
                        "the agent on host " + a.target.host_name + " did not take the command in time",
                        "Check the host with `platform host describe " + a.target.host_name + "`, then retry."},
                       request_id);
      }
      return problem({ErrorCode::timed_out, "the agent on host " + a.target.host_name + " took the command but sent no result",
                      "Retry; `platform events --resource " + a.target.instance_id + "` shows whether it finished."},
                     request_id);
    };
    if (!last) return ctx.pool.read([&](pqxx::transaction_base& tx) { return answer(read(tx), nullptr); });
    return ctx.pool.transact([&](pqxx::work& tx) { return answer(read(tx), &tx); });
  };
  return plan;
}

// platform-agent: the commands waiting for its host's instances, each handed out once (taken).
WatchPlan watch_exec(Context& ctx, const Request& req) {
  const auto credential = host_credential(req);
  auto host = ctx.pool.read([&](pqxx::transaction_base& tx) { return authenticate_host(tx, credential); });
  WatchPlan plan;
  plan.wait = versioned_wait(req, "ignored").wait;
  plan.level = [&ctx, host](bool last) -> std::optional<Response> {
    // Read-only until something waits: a write would ring the pool's doorbell on every wake-up.
    const bool waiting = ctx.pool.read([&](pqxx::transaction_base& tx) {
      return tx.exec_params1("SELECT EXISTS (SELECT 1 FROM core.exec_requests WHERE host_id = $1 AND taken_at IS NULL"
                             " AND finished_at IS NULL) OR EXISTS (SELECT 1 FROM core.exec_sessions WHERE host_id = $1"
                             " AND taken_at IS NULL AND finished_at IS NULL)",
                             host.id)[0]
          .as<bool>();
    });
    if (!waiting && !last) return std::nullopt;
    if (!waiting)
      return json_response(200, {{"host_id", host.id}, {"requests", Json::array()}, {"sessions", Json::array()}});
    return ctx.pool.transact([&](pqxx::work& tx) -> std::optional<Response> {
      Json out = Json::array();
      for (const auto& r : tx.exec_params(
               "UPDATE core.exec_requests SET taken_at = now() WHERE id IN ("
               "  SELECT id FROM core.exec_requests WHERE host_id = $1 AND taken_at IS NULL AND finished_at IS NULL"
               "  ORDER BY requested_at LIMIT 16 FOR UPDATE SKIP LOCKED)"
               " RETURNING id, instance_id, command::text, env::text, timeout_ms, stdin",
               host.id)) {
        Json x = {{"exec_id", r[0].as<std::string>()},
                  {"instance_id", r[1].as<std::string>()},
                  {"command", Json::parse(r[2].as<std::string>())},
                  {"env", Json::parse(r[3].as<std::string>())},
                  {"timeout_ms", r[4].as<std::int64_t>()},
                  {"max_output", kMaxOutput}};
        if (!r[5].is_null()) x["stdin"] = base64_encode(pqxx::binarystring(r[5]).str());
        out.push_back(std::move(x));
      }
      Json sessions = take_sessions(tx, host.id);  // interactive ones: api/handlers_sessions.cpp
      if (out.empty() && sessions.empty() && !last) return std::nullopt;  // another poll of this host took them
      return json_response(200, {{"host_id", host.id}, {"requests", out}, {"sessions", sessions}});
    });
  };
  return plan;
}

// platform-agent: the result of a command it took. {exit_code, timed_out, output (base64), truncated} or
// {error}: why it could not run it.
Response post_exec_result(Context& ctx, const Request& req) {
  const auto credential = host_credential(req);
  // The path is /v1/agent/exec/{exec}; public handlers get no params.
  const auto id = req.path.substr(std::string("/v1/agent/exec/").size());
  auto body = parse_body(req.body, {{"exit_code", FieldType::integer, false},
                                    {"timed_out", FieldType::boolean, false},
                                    {"output", FieldType::string, false},
                                    {"truncated", FieldType::boolean, false},
                                    {"error", FieldType::string, false}});
  const auto output = base64_decode(body.value("output", ""));
  if (!output || output->size() > kMaxOutput)
    throw PlatformError(ErrorCode::invalid_request, "output must be base64 of at most 1 MiB", "");
  const auto error = body.value("error", "");
  return ctx.pool.transact([&](pqxx::work& tx) {
    auto host = authenticate_host(tx, credential);
    auto r = tx.exec_params(
        "UPDATE core.exec_requests x SET finished_at = now(), exit_code = $3, timed_out = $4, output = $5,"
        " truncated = $6, error = $7"
        " FROM core.instances i WHERE x.id = $1 AND x.host_id = $2 AND x.finished_at IS NULL AND i.id = x.instance_id"
        " RETURNING x.instance_id, i.name, i.org_id, i.env_id",
        id, host.id, body.contains("exit_code") ? std::optional<int>(body["exit_code"].get<int>()) : std::nullopt,
        body.value("timed_out", false), pqxx::binarystring(*output), body.value("truncated", false),
        error.empty() ? std::nullopt : std::optional<std::string>(error.substr(0, 1000)));
    if (r.empty())
      throw PlatformError(ErrorCode::not_found, "no exec " + id.substr(0, 60) + " waits for a result from this host", "");
    const auto instance = r[0][0].as<std::string>();
    Json data = {{"exec_id", id},
                 {"exit_code", body.contains("exit_code") ? body["exit_code"] : Json()},
                 {"timed_out", body.value("timed_out", false)},
                 {"output_bytes", output->size()}};
    std::string reason = body.value("timed_out", false) ? "timed out"
                         : !error.empty()               ? "could not run: " + error.substr(0, 200)
                                                        : fmt::format("exited with status {}", body.value("exit_code", -1));
    data["reason"] = reason;
    Json meta = {{"actor", "host:" + host.name},         {"org_id", r[0][2].as<std::string>()},
                 {"resource_kind", "instance"},           {"resource_id", instance},
                 {"resource_name", r[0][1].as<std::string>()}, {"parent_id", r[0][3].as<std::string>()}};
    events::append(tx, instance_stream(instance), std::nullopt,
                   {{uuid_to_string(new_uuid_v7()), "InstanceExecFinished", 1, data, meta}});
    return json_response(200, {{"recorded", true}});
  });
}

}  // namespace

void add_exec_routes(std::vector<Route>& out) {
  const std::string base = "/v1/orgs/{org}/projects/{project}/apps/{app}/envs/{env}";
  out.push_back({"POST", base + "/instances/{instance}/exec",
                 "Run a command in a running instance and answer its exit code and output (waits for it)", {},
                 post_exec, {}});
  out.push_back({"GET", "/v1/agent/exec",
                 "Commands to run in the host's instances, each handed out once; long poll (platform-agent, host "
                 "credential)",
                 {}, {}, {}, watch_exec});
  out.push_back({"POST", "/v1/agent/exec/{exec}", "The result of a command the host ran (platform-agent, host credential)",
                 {}, {}, post_exec_result});
}

}  // namespace platform::api
