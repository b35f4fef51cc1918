// platform events, platform operation describe|list, platform wait
#include <CLI/CLI.hpp>
#include <iostream>
#include <thread>

#include "cli/cli.h"
#include "cli/event_detail.h"
#include "engine/duration.h"
#include "engine/error.h"
#include "engine/ids.h"

namespace platform::cli {
namespace {

struct EventArgs {
  bool follow = false;
  int tail = -1;  // -1: not asked
  std::string since, type, resource, operation;
};

// The API path of KIND/NAME (org/acme, project/shop, app/api, env/prod), its parents from the flags or
// the context; "" when the text is not KIND/NAME. Throws a usage error for an unknown kind.
std::string kind_name_path(const Session& s, const std::string& text, std::string* what = nullptr) {
  const auto slash = text.find('/');
  if (slash == std::string::npos) return "";
  const auto kind = text.substr(0, slash), name = text.substr(slash + 1);
  if (what) *what = kind + " " + name;
  if (kind == "org") return "/v1/orgs/" + api::url_encode(name);
  if (kind == "project") return "/v1/orgs/" + api::url_encode(s.need_org()) + "/projects/" + api::url_encode(name);
  if (kind == "app")
    return "/v1/orgs/" + api::url_encode(s.need_org()) + "/projects/" + api::url_encode(s.need_project()) + "/apps/" +
           api::url_encode(name);
  if (kind == "env")
    return "/v1/orgs/" + api::url_encode(s.need_org()) + "/projects/" + api::url_encode(s.need_project()) + "/apps/" +
           api::url_encode(s.need_app()) + "/envs/" + api::url_encode(name);
  throw PlatformError(ErrorCode::invalid_request, "unknown kind \"" + kind + "\"",
                      "Use org/NAME, project/NAME, app/NAME, env/NAME (or, for events, instance/NAME and "
                      "release/NAME), an ID, or an operation ID.");
}

// --resource takes an ID or KIND/NAME (app/api, with its parents' flags; instance/web-3 and release/v4
// in the env of --env): the ID it names.
std::string resource_id_of(const Session& s, const std::string& text) {
  std::string prefix;
  if (looks_like_id(text, &prefix)) return text;
  const auto slash = text.find('/');
  const auto kind = text.substr(0, slash), name = slash == std::string::npos ? "" : text.substr(slash + 1);
  std::string path;
  if (kind == "instance" || kind == "release") {
    if (name.empty())
      throw PlatformError(ErrorCode::invalid_request, "--resource \"" + text + "\" names no " + kind,
                          kind == "instance" ? "e.g. instance/web-3 (with --env)" : "e.g. release/v4 (with --env)");
    path = s.env_path() + (kind == "instance" ? "/instances/" : "/releases/") + api::url_encode(name);
  } else {
    path = kind_name_path(s, text);
  }
  if (path.empty())
    throw PlatformError(ErrorCode::invalid_request, "--resource \"" + text + "\" is neither an ID nor KIND/NAME",
                        "Use an ID (app_…) or KIND/NAME such as app/api (with --project), instance/web-3 or "
                        "release/v4 (with --env).");
  return s.client().call("GET", path).value("id", "");
}

std::string events_query(const EventArgs& a, const std::string& after, const std::string& wait, int tail = -1) {
  std::string q = tail > 0 ? "?tail=" + std::to_string(tail) : "?limit=1000";
  if (!after.empty()) q += "&after=" + api::url_encode(after);
  if (!wait.empty()) q += "&wait=" + wait;
  if (!a.since.empty()) q += "&since=" + api::url_encode(a.since);
  if (!a.type.empty()) q += "&type=" + api::url_encode(a.type);
  if (!a.resource.empty()) q += "&resource=" + api::url_encode(a.resource);
  if (!a.operation.empty()) q += "&operation=" + api::url_encode(a.operation);
  return q;
}

std::vector<std::string> event_row(const Json& e) {
  const auto& m = e["metadata"];
  // Events since resource_name was recorded name their resource in the metadata; older ones only
  // in the data of the resource's own events (create, delete).
  std::string res = m.value("resource_kind", "") + " " + m.value("resource_name", e["data"].value("name", ""));
  return {e.value("recorded_at", "").substr(0, 23), std::to_string(e.value("position", 0)), e.value("type", ""), res,
          m.value("resource_id", ""), m.value("actor_name", m.value("actor", "")), m.value("operation_id", ""),
          event_detail(e)};
}

const std::vector<std::string> kEventHeaders = {"TIME", "POS",   "TYPE",      "RESOURCE",
                                                "ID",   "ACTOR", "OPERATION", "DETAIL"};

void run_events(const Globals& g, EventArgs a) {
  auto s = open_session(g);
  auto client = s.client();
  if (!a.resource.empty()) a.resource = resource_id_of(s, a.resource);
  const auto base = "/v1/orgs/" + api::url_encode(s.need_org()) + "/events";
  if (!a.since.empty() && !parse_duration(a.since) && a.since.size() != 20)
    throw PlatformError(ErrorCode::invalid_request, "--since \"" + a.since + "\" is neither a duration nor a UTC time",
                        "Use e.g. --since 10m or --since 2026-11-21T09:30:00Z.");
  if (a.tail != -1 && (a.tail < 1 || a.tail > 1000))
    throw PlatformError(ErrorCode::invalid_request, "--tail must be from 1 to 1000",
                        "e.g. -n 20 for the newest 20 events; --since 1h for a time window.");
  // History first, page by page (or, with --tail, the newest events in one page).
  std::string after;
  Json all = Json::array();
  std::vector<std::vector<std::string>> rows;
  bool streaming = a.follow || g.format() == Format::ndjson;
  for (;;) {
    auto page = client.call("GET", base + events_query(a, after, "", a.tail));
    for (const auto& e : page["events"]) {
      if (g.format() == Format::table) {
        rows.push_back(event_row(e));
      } else if (streaming) {
        std::cout << e.dump() << "\n";
      } else {
        all.push_back(e);
      }
    }
    after = page.value("next_cursor", after);
    if (a.tail > 0 || page.value("count", 0) < 1000) break;
  }
  auto widths = table_widths(kEventHeaders, rows);  // followed rows line up under the table
  if (g.format() == Format::table && a.follow) {
    // At least the usual widths, so the followed rows fit the header (there may be few rows, or none,
    // to size the columns by).
    const std::vector<std::size_t> usual = {23, 4, 25, 22, 30, 30, 29, 0};
    for (std::size_t i = 0; i < widths.size(); ++i) widths[i] = std::max(widths[i], usual[i]);
    std::cout << table_line(widths, kEventHeaders) << "\n";
    for (const auto& r : rows) std::cout << table_line(widths, r) << "\n";
  } else if (g.format() == Format::table) {
    print_table(kEventHeaders, rows);
    if (rows.empty()) {
      std::string filters;
      for (const auto& [flag, value] : {std::pair{"--since ", a.since}, {"--type ", a.type},
                                        {"--resource ", a.resource}, {"--operation ", a.operation}})
        if (!value.empty()) filters += (filters.empty() ? "" : ", ") + (flag + value);
      note(g, filters.empty() ? "No events in this org yet."
                              : "No events match " + filters + " (a type is spelt as the TYPE column shows it, e.g. "
                                                                "InstanceStarted).");
    }
  }
  if (g.format() == Format::json && !a.follow) {
    print_json({{"events", all}, {"next_cursor", after}, {"count", all.size()}});
    return;
  }
  std::cout << std::flush;
  if (!a.follow) return;
  // Then follow with long polls; the cursor guarantees nothing is skipped or repeated.
  while (!interrupted()) {
    const auto page = call_through_outage(g, "events", [&] {
      return client.call("GET", base + events_query(a, after, "25s"), std::nullopt, "", std::chrono::seconds(40));
    });
    for (const auto& e : page["events"]) {
      if (g.format() == Format::table) {
        std::cout << table_line(widths, event_row(e)) << "\n";
      } else {
        std::cout << e.dump() << "\n";
      }
    }
    std::cout << std::flush;
    after = page.value("next_cursor", after);
  }
  throw PlatformError(ErrorCode::interrupted, "interrupted", "");
}

void print_operation(const Globals& g, const Json& op) {
  if (g.format() != Format::table) return print_json(op);
  std::cout << "Operation:  " << op.value("id", "") << "\n"
            << "Kind:       " << op.value("kind", "") << "\n"
            << "Status:     " << op.value("status", "") << "\n"
            << "Actor:      "
            << (op.value("actor_name", "").empty() || op.value("actor_name", "") == op.value("actor", "")
                    ? op.value("actor", "")
                    : op.value("actor_name", "") + " (" + op.value("actor", "") + ")")
            << "\n"
            << "Request:    " << op.value("request_id", "") << "\n"
            << "Started:    " << op.value("started_at", "") << "\n";
  if (!op.value("pending", Json::array()).empty()) std::cout << "Pending:    " << op["pending"].dump() << " (projections still folding)\n";
  std::cout << "Resources:\n";
  for (const auto& r : op.value("resources", Json::array()))
    std::cout << "  " << r.value("kind", "") << " " << r.value("name", "") << " (" << r.value("id", "") << ")\n";
  std::cout << "Events:\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : op.value("events", Json::array())) rows.push_back(event_row(e));
  print_table(kEventHeaders, rows);
}

struct WaitArgs {
  std::string target, for_state = "exists", timeout;  // timeout: 60s for targets, 5m for a rollout
};

// Waits for an operation to succeed, or for a resource (ID or KIND/NAME) to exist or be deleted,
// including ones that do not exist yet. Sleeps between checks on a long poll of the org's events.
// The env whose rollout an operation started (a deploy, a rollback, a scale, a restart: it set the env's
// release, a process's count or size, or asked for new instances), or nullopt.
std::optional<EnvTarget> rollout_of(api::Client& client, const Json& op) {
  std::string env_id;
  for (const auto& e : op.value("events", Json::array())) {
    const auto type = e.value("type", "");
    if (type == "EnvReleaseSet" || type == "ProcessScaled" || type == "EnvRestartRequested")
      for (const auto& r : op.value("resources", Json::array()))
        if (r.value("kind", "") == "env") env_id = r.value("id", "");
    if (type == "InstanceRestartRequested")  // `instance restart`: the rollout of the instance's env
      for (const auto& r : op.value("resources", Json::array()))
        if (r.value("kind", "") == "instance")
          env_id = client.call("GET", "/v1/resources/" + api::url_encode(r.value("id", ""))).value("parent_id", "");
  }
  if (env_id.empty()) return std::nullopt;
  // Its path "org/O/project/P/app/A/env/E" names it for the API and for the hints. An env deleted since
  // rolls nothing out any more.
  std::string path;
  try {
    const auto env = client.call("GET", "/v1/resources/" + api::url_encode(env_id));
    if (env.value("state", "") != "active") return std::nullopt;
    path = env.value("path", "");
  } catch (const PlatformError& e) {
    if (e.error().code == ErrorCode::not_found) return std::nullopt;
    throw;
  }
  auto n = path_names(path);
  if (!n.count("org") || !n.count("project") || !n.count("app") || !n.count("env")) return std::nullopt;
  return EnvTarget{"/v1/orgs/" + api::url_encode(n["org"]) + "/projects/" + api::url_encode(n["project"]) + "/apps/" +
                       api::url_encode(n["app"]) + "/envs/" + api::url_encode(n["env"]),
                   " --org " + n["org"] + " --project " + n["project"] + " --app " + n["app"] + " --env " + n["env"],
                   n["env"]};
}

void run_wait(const Globals& g, WaitArgs a) {
  if (a.target.empty()) return run_wait_converged(g, a.timeout.empty() ? "5m" : a.timeout);
  const bool timeout_given = !a.timeout.empty();
  if (a.timeout.empty()) a.timeout = "60s";
  auto s = open_session(g);
  auto client = s.client();
  auto timeout = parse_duration(a.timeout);
  if (!timeout) throw PlatformError(ErrorCode::invalid_request, "--timeout \"" + a.timeout + "\" is not a duration", "e.g. 60s");
  if (a.for_state != "exists" && a.for_state != "deleted")
    throw PlatformError(ErrorCode::invalid_request, "--for must be exists or deleted", "");
  std::string prefix, path, what;
  if (looks_like_id(a.target, &prefix) && prefix == "op") {
    path = "/v1/operations/" + a.target;
    what = "operation " + a.target;
  } else if (looks_like_id(a.target, &prefix)) {
    path = "/v1/resources/" + a.target;
    what = a.target;
  } else if (path = kind_name_path(s, a.target, &what); !path.empty()) {
  } else {
    throw PlatformError(ErrorCode::invalid_request, "cannot tell what \"" + a.target + "\" is",
                        "Wait on an operation ID (op_...), a resource ID, or KIND/NAME such as app/web.");
  }
  const bool is_op = path.rfind("/v1/operations/", 0) == 0;
  auto deadline = std::chrono::steady_clock::now() + *timeout;
  std::string after = "now";
  Json last;
  while (!interrupted()) {
    bool done = false;
    try {
      last = call_through_outage(g, "wait", [&] { return client.call("GET", path); }, deadline);
      if (is_op) done = last.value("status", "") == "succeeded";
      else done = (a.for_state == "exists") == (last.value("state", "") == "active");
    } catch (const PlatformError& e) {
      if (e.error().code != ErrorCode::not_found) throw;
      done = !is_op && a.for_state == "deleted";
      last = Json::object();
    }
    if (done && is_op) {
      // A deploy, rollback or scale is done when its rollout is: the env converges (or fails, exit 1).
      if (auto env = rollout_of(client, last)) {
        note(g, what + ": succeeded; waiting for env " + env->name + " to roll out");
        if (!timeout_given) {  // a rollout's own default, as `platform wait` without a target
          a.timeout = "5m";
          deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
        }
        last["rollout"] = wait_env_converged(g, client, *env, deadline, a.timeout);
        if (g.format() != Format::table) return print_json(last);
        std::cout << what << ": succeeded; converged: release " << last["rollout"]["release"].value("name", "")
                  << ", every process at its count and healthy" << refused_edge(last["rollout"]) << "\n";
        return;
      }
    }
    if (done) {
      if (g.format() != Format::table) print_json(last.empty() ? Json{{"target", a.target}, {"state", "deleted"}} : last);
      else std::cout << what << ": " << (is_op ? "succeeded" : a.for_state == "exists" ? "exists" : "deleted") << "\n";
      return;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 && is_op && last.empty())  // (an operation is visible once the projections fold it)
      throw PlatformError(ErrorCode::timed_out, what + " was not found within " + a.timeout,
                          "Operation IDs come from receipts; `platform events` shows the operation of every event.");
    if (left.count() <= 0)
      throw PlatformError(ErrorCode::timed_out,
                          what + (is_op ? " did not succeed" : a.for_state == "exists" ? " did not exist" : " was not deleted") +
                              " within " + a.timeout,
                          is_op ? "See `platform operation describe " + a.target + "` for what is pending."
                                : "See `platform events` for what happened.");
    // Sleep until something happens in the org (or at most a second, for targets outside it).
    auto wait_ms = std::min<long>(left.count(), 1000);
    try {
      auto page = client.call("GET", "/v1/orgs/" + api::url_encode(s.need_org()) + "/events?limit=1&after=" + after +
                                         "&wait=" + std::to_string(std::max<long>(wait_ms, 1)) + "ms");
      after = page.value("next_cursor", after);
    } catch (const PlatformError&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
    }
  }
  throw PlatformError(ErrorCode::interrupted, "interrupted", "");
}

}  // namespace

void describe_operation(const Globals& g, const Session& s, const std::string& id) {
  print_operation(g, s.client().call("GET", "/v1/operations/" + api::url_encode(id)));
}

namespace {
// The options `platform events` and `platform NOUN events` share.
void add_event_options(CLI::App* cmd, EventArgs& a) {
  cmd->add_flag("-f,--follow", a.follow, "Keep streaming new events (NDJSON with -o json)");
  cmd->add_option("-n,--tail", a.tail, "Only the newest N (at most 1000), then with -f what comes next");
  cmd->add_option("--since", a.since, "Only events newer than a duration (10m) or a UTC time");
  cmd->add_option("--type", a.type, "Event type, or a prefix ending in * (App*)");
}
}  // namespace

void add_events_verb(CLI::App* noun, Globals& g, const std::string& kind, const std::string& example) {
  auto ea = std::make_shared<EventArgs>();
  auto name = std::make_shared<std::string>();
  auto* events = noun->add_subcommand(
      "events", "The " + kind + "'s events and its children's (as platform events --resource " + kind + "/NAME)");
  events->add_option("name", *name, "Name or ID")->required();
  add_event_options(events, *ea);
  events->footer("Example:\n  " + example);
  events->callback([&g, ea, name, kind] {
    std::string prefix;
    ea->resource = looks_like_id(*name, &prefix) ? *name : kind + "/" + *name;
    run_events(g, *ea);
  });
}

void add_event_commands(CLI::App& app, Globals& g) {
  auto ea = std::make_shared<EventArgs>();
  auto* events = app.add_subcommand("events", "Show the org's events (the audit trail); --follow to stream");
  events->footer(
      "Examples:\n"
      "  platform events --since 1h\n"
      "  platform events -n 20 -f                  # the newest 20, then new ones as they come\n"
      "  platform events --resource env/prod --project shop --app api --follow\n"
      "  platform events --resource instance/web-3 --project shop --app api --env prod\n"
      "  platform events --type 'Instance*' --since 10m\n"
      "  platform -o ndjson events --follow | jq -c 'select(.type == \"InstanceExited\")'");
  add_event_options(events, *ea);
  events->add_option("--resource", ea->resource,
                     "Resource ID, or KIND/NAME (app/api, with its parents' flags; instance/web-3, release/v4 with --env): "
                     "its events and its children's");
  events->add_option("--operation", ea->operation, "Operation ID");
  events->callback([&g, ea] { run_events(g, *ea); });

  auto* op = app.add_subcommand("operation", "Operations: what a mutation did and whether it has converged");
  op->require_subcommand(1);
  auto op_id = std::make_shared<std::string>();
  auto* describe = op->add_subcommand("describe", "Show an operation, its status and its events");
  describe->add_option("id", *op_id, "Operation ID (op_...)")->required();
  describe->callback([&g, op_id] {
    describe_operation(g, open_session(g), *op_id);
  });
  auto* list = op->add_subcommand("list", "Recent operations of the org");
  list->callback([&g] {
    auto s = open_session(g);
    auto r = s.client().call("GET", "/v1/orgs/" + api::url_encode(s.need_org()) + "/operations");
    if (g.format() == Format::json) return print_json(r);
    if (g.format() == Format::ndjson) {
      for (const auto& i : r["items"]) std::cout << i.dump() << "\n";
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& i : r["items"])
      rows.push_back({i.value("started_at", "").substr(0, 19), i.value("id", ""), i.value("kind", ""),
                      i.value("resource_id", ""), i.value("actor_name", i.value("actor", ""))});
    print_table({"STARTED", "OPERATION", "KIND", "RESOURCE", "ACTOR"}, rows);
  });

  auto wa = std::make_shared<WaitArgs>();
  auto* wait = app.add_subcommand(
      "wait",
      "Wait for an operation to succeed (a deploy, rollback or scale: and its rollout), a resource to exist / be "
      "deleted, or (no target) the env's rollout; a rollout until the edges serve it too");
  wait->add_option("target", wa->target,
                   "op_... | resource ID | KIND/NAME (e.g. app/web); none: the env converges and its edges serve it");
  wait->add_option("--for", wa->for_state, "exists | deleted (resources)")->capture_default_str();
  wait->add_option("--timeout", wa->timeout, "Give up after this long (exit 4; default 60s, 5m for a rollout)");
  wait->callback([&g, wa] { run_wait(g, *wa); });
}

}  // namespace platform::cli
