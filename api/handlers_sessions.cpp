// Interactive sessions (`platform exec -i`, `-it`; docs/instances.md#sessions): a command in a running
// instance whose input and output stream while it runs, on a terminal with -t. The CLI opens one (a row
// in core.exec_sessions and InstanceSessionOpened on the instance's stream); the agent of the instance's
// host takes it with its exec commands (GET /v1/agent/exec) and starts it. From then on bytes travel as
// numbered chunks through core.exec_session_chunks, each side long-polling the other's (woken by NOTIFY
// platform_sessions '<id>:i' or '<id>:o', whichever API process holds the poll) and acknowledging
// what it read by asking for what comes after it. Either side gone for a minute ends the session.
#include <fmt/format.h>

#include <tuple>

#include "api/body.h"
#include "api/env_vars.h"
#include "api/exec_common.h"
#include "api/hosts.h"
#include "api/instances.h"
#include "api/routes.h"
#include "engine/crypto.h"
#include "engine/db.h"
#include "engine/event_store.h"
#include "engine/ids.h"

namespace platform::api {
namespace {

constexpr std::size_t kMaxChunk = 64 << 10;       // the bytes of one chunk
constexpr std::int64_t kMaxBacklog = 4 << 20;     // unread bytes one side may leave waiting for the other
constexpr int kMaxPerHost = 16;                   // live sessions on one host
constexpr int kPickUpSeconds = 15;                // the agent's time to take a session
constexpr int kGoneSeconds = 60;                  // a side that asked nothing for this long is gone
constexpr int kChunksPerAnswer = 64;

[[noreturn]] void no_session(const std::string& id) {
  throw PlatformError(ErrorCode::not_found, "no session \"" + id.substr(0, 80) + "\"",
                      "Open one with `platform exec -it INSTANCE -- COMMAND`.");
}

// The session's org, for a user's request; another org's session is "not found", as for any other ID.
void check_user_session(Context& ctx, Principal& p, const std::string& id) {
  auto org = ctx.pool.read([&](pqxx::transaction_base& tx) {
    auto r = tx.exec_params("SELECT org_id FROM core.exec_sessions WHERE id = $1", id);
    return r.empty() ? std::string() : r[0][0].as<std::string>();
  });
  if (org.empty() || !ctx.auth.can_access_org(p, org)) no_session(id);
}

// The {session} of /v1/agent/sessions/{session}/<what> (public handlers get no params).
std::string agent_session_id(const Request& req, const std::string& what) {
  const std::string prefix = "/v1/agent/sessions/", suffix = "/" + what;
  return req.path.substr(prefix.size(), req.path.size() - prefix.size() - suffix.size());
}

void check_agent_session(Context& ctx, const Request& req, const std::string& id) {
  const auto credential = host_credential(req);
  const bool ours = ctx.pool.read([&](pqxx::transaction_base& tx) {
    auto host = authenticate_host(tx, credential);
    return !tx.exec_params("SELECT 1 FROM core.exec_sessions WHERE id = $1 AND host_id = $2", id, host.id).empty();
  });
  if (!ours) no_session(id);
}

std::int64_t after_param(const Request& req) {
  const auto a = req.param("after");
  if (a.empty()) return 0;
  if (a.size() > 18 || a.find_first_not_of("0123456789") != std::string::npos)
    throw PlatformError(ErrorCode::invalid_request, "after must be the seq of the last chunk read (a number)",
                        "Pass back `next` of the previous answer.");
  return std::stoll(a);
}

// A long poll for `stream`'s chunks after `after`, woken by their NOTIFY: first acknowledges (deletes)
// the chunks up to `after` and notes in `seen_column` that this side asked.
WatchPlan chunk_poll(Context& ctx, const Request& req, const std::string& id, const char* stream, std::int64_t after,
                     const char* seen_column) {
  ctx.pool.transact_quiet([&](pqxx::work& tx) {
    tx.exec("SET LOCAL synchronous_commit = off");  // as for the chunks themselves (store_chunk)
    tx.exec_params("DELETE FROM core.exec_session_chunks WHERE session_id = $1 AND stream = $2 AND seq <= $3", id,
                   std::string(stream), after);
    tx.exec_params(fmt::format("UPDATE core.exec_sessions SET {} = now() WHERE id = $1", seen_column), id);
  });
  WatchPlan plan;
  plan.wait = versioned_wait(req, "ignored").wait;
  plan.nudge_key = id + ":" + stream;
  return plan;
}

// The chunks of `stream` after `after`, in order: [{seq, data (base64), [rows, cols], [eof]}] and the last seq.
std::pair<Json, std::int64_t> chunks_after(pqxx::transaction_base& tx, const std::string& id, const char* stream,
                                           std::int64_t after) {
  Json out = Json::array();
  std::int64_t next = after;
  for (const auto& r : tx.exec_params("SELECT seq, data, rows, cols, eof FROM core.exec_session_chunks"
                                      " WHERE session_id = $1 AND stream = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                                      id, std::string(stream), after, kChunksPerAnswer)) {
    const auto seq = r[0].as<std::int64_t>();
    if (seq != next + 1) break;  // a gap: an earlier chunk's insert has not committed yet
    Json c = {{"seq", seq}, {"data", base64_encode(pqxx::binarystring(r[1]).str())}};
    if (!r[2].is_null()) {
      c["rows"] = r[2].as<int>();
      c["cols"] = r[3].as<int>();
    }
    if (r[4].as<bool>()) c["eof"] = true;
    out.push_back(std::move(c));
    next = seq;
  }
  return {out, next};
}

// Stores one chunk (a retry of the same seq is a no-op) and wakes the other side's poll. Refuses while
// the other side has kMaxBacklog bytes unread, so a stalled reader holds the writer back.
void store_chunk(pqxx::work& tx, const std::string& id, const char* stream, const Json& body, const std::string& data) {
  const auto backlog = tx.exec_params1("SELECT coalesce(sum(length(data)), 0)::bigint FROM core.exec_session_chunks"
                                       " WHERE session_id = $1 AND stream = $2",
                                       id, std::string(stream))[0]
                           .as<std::int64_t>();
  if (backlog > kMaxBacklog)
    throw PlatformError(ErrorCode::unavailable,
                        fmt::format("the other side of session {} has {} bytes left to read", id, backlog),
                        "Retry shortly, once it has read them.");
  const bool resize = body.contains("rows") || body.contains("cols");
  tx.exec_params(
      "INSERT INTO core.exec_session_chunks (session_id, stream, seq, data, rows, cols, eof)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (session_id, stream, seq) DO NOTHING",
      id, std::string(stream), body["seq"].get<std::int64_t>(), pqxx::binarystring(data),
      resize ? std::optional<int>(body.value("rows", 24)) : std::nullopt,
      resize ? std::optional<int>(body.value("cols", 80)) : std::nullopt, body.value("eof", false));
  // Bytes and "last seen" times need no WAL flush before the other side may go on: a crash loses the
  // session anyway. So the commit does not wait for one (the end, with its event, does).
  tx.exec_params("SELECT pg_notify('platform_sessions', $1), set_config('synchronous_commit', 'off', true)",
                 id + ":" + stream);
}

// A chunk's fields, checked: {seq, data (base64, at most 64 KiB), and for input rows/cols, eof}.
std::string checked_chunk(const Json& body, bool input) {
  const auto seq = body["seq"].get<std::int64_t>();
  if (seq < 1) throw PlatformError(ErrorCode::invalid_request, "seq must count chunks from 1", "");
  auto data = base64_decode(body.value("data", ""));
  if (!data || data->size() > kMaxChunk)
    throw PlatformError(ErrorCode::invalid_request, "data must be base64 of at most 64 KiB", "Send larger input in several chunks.");
  if (input)
    for (const char* k : {"rows", "cols"})
      if (body.contains(k) && (body[k].get<std::int64_t>() < 1 || body[k].get<std::int64_t>() > 1000))
        throw PlatformError(ErrorCode::invalid_request, std::string(k) + " must be from 1 to 1000", "");
  return *data;
}

// Appends InstanceSessionEnded for session `id`: by `actor` ("host:NAME", "platformd:api", or a user's id
// with `actor_name`), with its exit status or why it ended without one.
void append_ended(pqxx::work& tx, const std::string& id, const std::string& actor, const std::string& actor_name,
                  std::optional<int> code, const std::string& error) {
  auto r = tx.exec_params("SELECT s.instance_id, i.name, s.org_id, s.env_id FROM core.exec_sessions s"
                          " JOIN core.instances i ON i.id = s.instance_id WHERE s.id = $1",
                          id);
  if (r.empty()) return;
  const auto instance = r[0][0].as<std::string>();
  Json meta = {{"actor", actor},          {"org_id", r[0][2].as<std::string>()},
               {"resource_kind", "instance"}, {"resource_id", instance},
               {"resource_name", r[0][1].as<std::string>()}, {"parent_id", r[0][3].as<std::string>()}};
  if (!actor_name.empty()) meta["actor_name"] = actor_name;
  Json d = {{"session_id", id},
            {"exit_code", code ? Json(*code) : Json()},
            {"reason", code ? fmt::format("the session ended with status {}{}", *code,
                                          error.empty() ? "" : " (" + error.substr(0, 200) + ")")
                            : "the session ended: " + (error.empty() ? std::string("no exit status") : error.substr(0, 200))}};
  events::append(tx, instance_stream(instance), std::nullopt,
                 {{uuid_to_string(new_uuid_v7()), "InstanceSessionEnded", 1, d, meta}});
}

struct Opened {
  std::string id;
  ExecTarget target;  // where it runs
};

Response post_session(Context& ctx, const Request& req, Principal& p, const Params& params) {
  auto body = parse_body(req.body, {{"command", FieldType::array_of_strings, true},
                                    {"env", FieldType::object_of_strings, false},
                                    {"tty", FieldType::boolean, false},
                                    {"rows", FieldType::integer, false},
                                    {"cols", FieldType::integer, false}});
  const std::string eg = "e.g. {\"command\": [\"/bin/sh\"], \"tty\": true, \"rows\": 40, \"cols\": 120}";
  check_exec_command(body["command"], eg);
  const Json env_vars = body.value("env", Json::object());
  check_exec_env(env_vars, eg);
  const bool tty = body.value("tty", false);
  const auto rows = body.value("rows", std::int64_t{24}), cols = body.value("cols", std::int64_t{80});
  if (rows < 1 || rows > 1000 || cols < 1 || cols > 1000)
    throw PlatformError(ErrorCode::invalid_request, "rows and cols must be from 1 to 1000", eg);
  const auto chain = env_chain(ctx, p, params);
  const auto& env = chain.back();
  Opened o;
  o.id = new_id("ses");
  ctx.pool.transact([&](pqxx::work& tx) {
    o.target = running_exec_target(tx, chain, params.at("instance"));
    const auto& target = o.target;
    const auto live = tx.exec_params1("SELECT count(*) FROM core.exec_sessions WHERE host_id = $1 AND finished_at IS NULL",
                                      target.host_id)[0]
                          .as<int>();
    if (live >= kMaxPerHost)
      throw PlatformError(ErrorCode::capacity,
                          fmt::format("host {} already runs {} sessions", target.host_name, kMaxPerHost),
                          "End one (exit its shell), or retry in a minute: a session whose CLI went away ends then.");
    tx.exec_params(
        "INSERT INTO core.exec_sessions (id, org_id, env_id, instance_id, host_id, command, env, tty, rows, cols,"
        " requested_by) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, $11)",
        o.id, target.org_id, env.id, target.instance_id, target.host_id, body["command"].dump(), env_vars.dump(), tty,
        static_cast<int>(rows), static_cast<int>(cols), p.user_id);
    Json names = Json::array();
    for (const auto& [k, _] : env_vars.items()) names.push_back(k);  // the values may be anything: names only
    Actor actor{p.user_id, req.request_id, new_id("op"), "instance.session", p.user_name};
    events::append(tx, instance_stream(o.target.instance_id), std::nullopt,
                   {{uuid_to_string(new_uuid_v7()), "InstanceSessionOpened", 1,
                     Json{{"session_id", o.id}, {"command", body["command"]}, {"env", names}, {"tty", tty},
                          {"reason", p.user_name + " opens " + (tty ? "a terminal" : "a session") + ": " +
                                         shell_line(body["command"]).substr(0, 300)}},
                     event_metadata(actor, target.org_id, "instance", o.target.instance_id, env.id, o.target.instance_name)}});
  });
  return json_response(201, {{"session_id", o.id},
                             {"instance_id", o.target.instance_id},
                             {"instance", o.target.instance_name},
                             {"host", o.target.host_name},
                             {"tty", tty}});
}

Response post_input(Context& ctx, const Request& req, Principal& p, const Params& params) {
  const auto& id = params.at("session");
  check_user_session(ctx, p, id);
  auto body = parse_body(req.body, {{"seq", FieldType::integer, true},
                                    {"data", FieldType::string, false},
                                    {"rows", FieldType::integer, false},
                                    {"cols", FieldType::integer, false},
                                    {"eof", FieldType::boolean, false}});
  const auto data = checked_chunk(body, true);
  ctx.pool.transact_quiet([&](pqxx::work& tx) {
    auto r = tx.exec_params("UPDATE core.exec_sessions SET client_seen_at = now() WHERE id = $1"
                            " RETURNING finished_at IS NOT NULL OR close_requested",
                            id);
    if (r.empty()) no_session(id);
    if (r[0][0].as<bool>())
      throw PlatformError(ErrorCode::precondition_failed, "session " + id + " has ended",
                          "Its output and exit status are at GET /v1/sessions/" + id + "/output.");
    store_chunk(tx, id, "i", body, data);
  });
  return json_response(200, {{"session_id", id}, {"seq", body["seq"]}});
}

WatchPlan get_output(Context& ctx, const Request& req, Principal& p, const Params& params) {
  const auto id = params.at("session");
  check_user_session(ctx, p, id);
  const auto after = after_param(req);
  auto plan = chunk_poll(ctx, req, id, "o", after, "client_seen_at");
  plan.level = [&ctx, id, after](bool last) -> std::optional<Response> {
    // The chunks and the session's state come from one snapshot. Read apart, the agent's last chunk and
    // its end could both commit in between: the answer would say "ended" without that chunk, and the
    // CLI, which stops at "ended", would never print it.
    struct Look {
      Json chunks;
      std::int64_t next = 0;
      bool ended = false, silent = false;  // silent: not ended, but its agent missed its time
      Json exit_code;
      std::optional<std::string> error;
    };
    auto look = [&] {
      return ctx.pool.read([&](pqxx::transaction_base& tx) {
        Look l;
        std::tie(l.chunks, l.next) = chunks_after(tx, id, "o", after);
        if (!l.chunks.empty()) return l;
        auto s = tx.exec_params(
            "SELECT finished_at IS NOT NULL, exit_code, error,"
            "       finished_at IS NULL AND ((taken_at IS NULL AND requested_at < now() - $2 * interval '1 second')"
            "         OR (taken_at IS NOT NULL AND agent_seen_at < now() - $3 * interval '1 second'))"
            " FROM core.exec_sessions WHERE id = $1",
            id, kPickUpSeconds, kGoneSeconds);
        if (s.empty()) no_session(id);
        l.ended = s[0][0].as<bool>();
        if (!s[0][1].is_null()) l.exit_code = s[0][1].as<int>();
        if (!s[0][2].is_null()) l.error = s[0][2].as<std::string>();
        l.silent = s[0][3].as<bool>();
        return l;
      });
    };
    auto l = look();
    if (l.silent) {
      // Its agent did not take it in time, or stopped relaying it: it ends here (the UPDATE checks again,
      // so an agent that reported meanwhile wins), and the answer comes from a snapshot after that.
      const bool appended = ctx.pool.transact_quiet([&](pqxx::work& tx) {
        auto r = tx.exec_params(
            "UPDATE core.exec_sessions SET finished_at = now(),"
            "   error = CASE WHEN taken_at IS NULL THEN 'the agent on the instance''s host did not take it in time'"
            "                ELSE 'the agent on the instance''s host stopped relaying it' END"
            " WHERE id = $1 AND finished_at IS NULL AND ((taken_at IS NULL AND requested_at < now() - $2 * interval '1 second')"
            "   OR (taken_at IS NOT NULL AND agent_seen_at < now() - $3 * interval '1 second'))"
            " RETURNING error",
            id, kPickUpSeconds, kGoneSeconds);
        if (r.empty()) return false;
        append_ended(tx, id, "platformd:api", "", std::nullopt, r[0][0].as<std::string>());
        return true;
      });
      if (appended) ctx.pool.wake();
      l = look();
    }
    if (!l.chunks.empty())
      return json_response(200, {{"session_id", id}, {"chunks", l.chunks}, {"next", l.next}, {"ended", false}});
    if (!l.ended && !last) return std::nullopt;
    Json out = {{"session_id", id}, {"chunks", Json::array()}, {"next", after}, {"ended", l.ended}};
    if (l.ended) {
      out["exit_code"] = l.exit_code;
      if (l.error) out["error"] = *l.error;
    }
    return json_response(200, out);
  };
  return plan;
}

Response delete_session(Context& ctx, const Request&, Principal& p, const Params& params) {
  const auto& id = params.at("session");
  check_user_session(ctx, p, id);
  ctx.pool.transact([&](pqxx::work& tx) {
    // Taken: the agent ends the command and reports how it ended. Never taken: it ends here.
    tx.exec_params("UPDATE core.exec_sessions SET close_requested = true, client_seen_at = now() WHERE id = $1", id);
    if (!tx.exec_params("UPDATE core.exec_sessions SET finished_at = now(), error = 'closed before it started'"
                        " WHERE id = $1 AND taken_at IS NULL AND finished_at IS NULL RETURNING 1",
                        id)
             .empty())
      append_ended(tx, id, p.user_id, p.user_name, std::nullopt, "closed before it started");
    tx.exec_params("SELECT pg_notify('platform_sessions', $1), pg_notify('platform_sessions', $2)", id + ":i", id + ":o");
  });
  return json_response(200, {{"session_id", id}, {"closing", true}});
}

// platform-agent: the input of a session it runs; `close` when the CLI ended it or went away.
WatchPlan watch_input(Context& ctx, const Request& req) {
  const auto id = agent_session_id(req, "input");
  check_agent_session(ctx, req, id);
  const auto after = after_param(req);
  auto plan = chunk_poll(ctx, req, id, "i", after, "agent_seen_at");
  plan.level = [&ctx, id, after](bool last) -> std::optional<Response> {
    return ctx.pool.read([&](pqxx::transaction_base& tx) -> std::optional<Response> {
      auto [chunks, next] = chunks_after(tx, id, "i", after);
      auto s = tx.exec_params1(
          "SELECT CASE WHEN finished_at IS NOT NULL THEN 'it has ended'"
          "            WHEN close_requested THEN 'the client ended it'"
          "            WHEN client_seen_at < now() - $2 * interval '1 second' THEN 'the client went away' END"
          " FROM core.exec_sessions WHERE id = $1",
          id, kGoneSeconds);
      const bool close = !s[0].is_null();
      if (chunks.empty() && !close && !last) return std::nullopt;
      Json out = {{"session_id", id}, {"chunks", chunks}, {"next", next}, {"close", close && chunks.empty()}};
      if (close && chunks.empty()) out["why"] = s[0].as<std::string>();
      return json_response(200, out);
    });
  };
  return plan;
}

// platform-agent: output of a session it runs, and at its end the exit status ({ended, exit_code} or
// {ended, error}); the end appends InstanceSessionEnded.
Response post_output(Context& ctx, const Request& req) {
  const auto id = agent_session_id(req, "output");
  const auto credential = host_credential(req);
  auto body = parse_body(req.body, {{"seq", FieldType::integer, true},
                                    {"data", FieldType::string, false},
                                    {"ended", FieldType::boolean, false},
                                    {"exit_code", FieldType::integer, false},
                                    {"error", FieldType::string, false}});
  const auto data = checked_chunk(body, false);
  const bool ended = body.value("ended", false);
  auto write = [&](pqxx::work& tx) {
    auto host = authenticate_host(tx, credential);
    auto r = tx.exec_params(
        "UPDATE core.exec_sessions SET agent_seen_at = now() WHERE id = $1 AND host_id = $2"
        " RETURNING finished_at IS NOT NULL",
        id, host.id);
    if (r.empty()) no_session(id);
    if (!data.empty()) store_chunk(tx, id, "o", body, data);
    if (!ended || r[0][0].as<bool>()) return;
    const std::optional<int> code = body.contains("exit_code") ? std::optional<int>(body["exit_code"].get<int>()) : std::nullopt;
    const auto error = body.value("error", "").substr(0, 1000);
    tx.exec_params("UPDATE core.exec_sessions SET finished_at = now(), exit_code = $2, error = $3 WHERE id = $1", id, code,
                   error.empty() ? std::nullopt : std::optional<std::string>(error));
    tx.exec_params("SELECT pg_notify('platform_sessions', $1), pg_notify('platform_sessions', $2)", id + ":i", id + ":o");
    append_ended(tx, id, "host:" + host.name, "", code, error);
  };
  // Bytes alone append no event: no doorbell for them.
  if (ended)
    ctx.pool.transact(write);
  else
    ctx.pool.transact_quiet(write);
  return json_response(200, {{"session_id", id}, {"seq", body["seq"]}});
}

}  // namespace

Json take_sessions(pqxx::transaction_base& tx, const std::string& host_id) {
  Json out = Json::array();
  for (const auto& r : tx.exec_params(
           "UPDATE core.exec_sessions SET taken_at = now(), agent_seen_at = now() WHERE id IN ("
           "  SELECT id FROM core.exec_sessions WHERE host_id = $1 AND taken_at IS NULL AND finished_at IS NULL"
           "  ORDER BY requested_at LIMIT 16 FOR UPDATE SKIP LOCKED)"
           " RETURNING id, instance_id, command::text, env::text, tty, rows, cols",
           host_id))
    out.push_back({{"session_id", r[0].as<std::string>()},
                   {"instance_id", r[1].as<std::string>()},
                   {"command", Json::parse(r[2].as<std::string>())},
                   {"env", Json::parse(r[3].as<std::string>())},
                   {"tty", r[4].as<bool>()},
                   {"rows", r[5].as<int>()},
                   {"cols", r[6].as<int>()}});
  return out;
}

void add_session_routes(std::vector<Route>& out) {
  const std::string base = "/v1/orgs/{org}/projects/{project}/apps/{app}/envs/{env}";
  out.push_back({"POST", base + "/instances/{instance}/sessions",
                 "Open an interactive session (a command whose input and output stream; a terminal with tty) in a "
                 "running instance",
                 post_session, {}, {}});
  out.push_back({"POST", "/v1/sessions/{session}/input", "Send a session's next input chunk (bytes, a resize, or the end)",
                 post_input, {}, {}});
  out.push_back({"GET", "/v1/sessions/{session}/output",
                 "A session's output after a chunk, and its exit status once it ended; long poll", {}, get_output, {}});
  out.push_back({"DELETE", "/v1/sessions/{session}", "End a session: its command is killed", delete_session, {}, {}});
  out.push_back({"GET", "/v1/agent/sessions/{session}/input",
                 "A session's input for the agent running it; long poll (platform-agent, host credential)", {}, {}, {},
                 watch_input});
  out.push_back({"POST", "/v1/agent/sessions/{session}/output",
                 "A session's output, and its exit status at its end (platform-agent, host credential)", {}, {},
                 post_output});
}

}  // namespace platform::api
