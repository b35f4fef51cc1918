// An env's config: visible variables, versioned. Each change is one ConfigVersionCreated event in the
// stream config-<env id> holding the whole resulting set, so version N of any env is one indexed read
// and a release can name the exact config it uses (docs/config.md).
#include <fmt/format.h>

#include "api/body.h"
#include "api/env_vars.h"
#include "api/metrics.h"
#include "api/mutation.h"
#include "api/path.h"
#include "api/releases.h"
#include "api/routes.h"
#include "engine/db.h"
#include "engine/ids.h"

namespace platform::api {
namespace {

constexpr std::size_t kMaxValueBytes = 32 * 1024, kMaxKeys = 500;
const std::string kKind = "config";

Json list_json(const VarsVersion& s, const std::string& env_id, const std::string& path) {
  return {{"env_id", env_id}, {"path", path}, {"version", s.version()}, {"values", s.values}};
}

Response get_config(Context& ctx, const Request&, Principal& p, const Params& params) {
  auto chain = env_chain(ctx, p, params);
  auto s = ctx.pool.read([&](pqxx::transaction_base& tx) { return latest_vars(tx, kKind, chain.back().id); });
  return json_response(200, list_json(s, chain.back().id, path_of(chain)));
}

Response patch_config(Context& ctx, const Request& req, Principal& p, const Params& params) {
  auto body = parse_body(req.body, {{"set", FieldType::object_of_strings}, {"unset", FieldType::array_of_strings}});
  auto set = body.value("set", Json::object());
  auto unset = body.value("unset", Json::array());
  if (set.empty() && unset.empty())
    throw PlatformError(ErrorCode::invalid_request, "nothing to change: give \"set\" and/or \"unset\"",
                        "e.g. {\"set\": {\"LOG_LEVEL\": \"debug\"}, \"unset\": [\"OLD_FLAG\"]}");
  for (auto it = set.begin(); it != set.end(); ++it) {
    check_var_name(it.key());
    if (it.value().get_ref<const std::string&>().size() > kMaxValueBytes)
      throw PlatformError(ErrorCode::invalid_request, "the value of " + it.key() + " is larger than 32 KiB",
                          "Config is for small settings; put large data in your image, or where your app fetches it from.");
  }
  for (const auto& k : unset) {
    check_var_name(k.get<std::string>());
    if (set.contains(k.get<std::string>()))
      throw PlatformError(ErrorCode::invalid_request, k.get<std::string>() + " is both set and unset",
                          "Give each variable once.");
  }
  auto chain = env_chain(ctx, p, params);
  const auto env = chain.back();
  const auto path = path_of(chain);
  ctx.metrics.mutations_total++;
  return run_mutation(ctx, req, p, "config.set", 200, [&](pqxx::work& tx, const Actor& actor) {
    // Changes to one env's config are serialised: reading the version and appending the next never conflict.
    lock_vars(tx, kKind, env.id);
    auto s = latest_vars(tx, kKind, env.id);
    const auto next = s.version() + 1;
    const auto now = utc_now(tx);
    Json values = s.values, changed = Json::array(), removed = Json::array(), diff = Json::array();
    for (auto it = set.begin(); it != set.end(); ++it) {
      auto old = values.find(it.key());
      if (old != values.end() && (*old)["value"] == it.value()) continue;  // already that value
      diff.push_back({{"action", old == values.end() ? "add" : "change"}, {"kind", "config"}, {"key", it.key()},
                      {"summary", fmt::format("{} {}", old == values.end() ? "add" : "change", it.key())},
                      {"from", old == values.end() ? Json() : (*old)["value"]}, {"to", it.value()}});
      values[it.key()] = {{"value", it.value()}, {"version", next}, {"set_by", actor.user_id}, {"set_at", now}};
      changed.push_back(it.key());
    }
    for (const auto& k : unset) {
      auto name = k.get<std::string>();
      if (!values.contains(name)) continue;  // not set: nothing to remove
      diff.push_back({{"action", "remove"}, {"kind", "config"}, {"key", name}, {"summary", "remove " + name},
                      {"from", values[name]["value"]}});
      values.erase(name);
      removed.push_back(name);
    }
    if (values.size() > kMaxKeys)
      throw PlatformError(ErrorCode::invalid_request, fmt::format("an env holds at most {} config variables", kMaxKeys),
                          "Unset variables you no longer need.");
    CommandReceipt r;
    Json resource = env_resource_json(env, path);
    Json next_commands = Json::array({"platform config list " + env_flags(chain),
                                      fmt::format("platform events --resource {}", env.id)});
    if (diff.empty()) {  // nothing changes: no new version
      r.duplicate = true;
      r.receipt = {{"resource", resource}, {"config_version", s.version()}, {"diff", diff}, {"events", Json::array()},
                   {"next", next_commands}, {"note", "nothing changed: every value was already so"}};
      return r;
    }
    Json data = {{"env_id", env.id}, {"version", next}, {"set", changed}, {"unset", removed}, {"values", values}};
    auto appended = events::append(tx, vars_stream(kKind, env.id), s.stream_version,
                                   {{uuid_to_string(new_uuid_v7()), "ConfigVersionCreated", 1, data,
                                     event_metadata(actor, env)}});
    CommandOutcome out;
    out.resource_id = env.id;
    out.appended = appended;
    r.last = out.last();
    next_commands.insert(next_commands.begin(), "platform diff " + env_flags(chain));
    r.receipt = {{"resource", resource}, {"config_version", next}, {"diff", diff},
                 {"events", out.events_json(vars_stream(kKind, env.id))}, {"next", next_commands},
                 {"note", vars_pending_note(tx, env.id, "config", next, changed, env_flags(chain))}};
    return r;
  });
}

}  // namespace

void add_config_routes(std::vector<Route>& out) {
  const std::string base = "/v1/orgs/{org}/projects/{project}/apps/{app}/envs/{env}/config";
  out.push_back({"GET", base, "An env's config: every variable with its value and the version that set it",
                 get_config, {}, {}});
  out.push_back({"PATCH", base, "Set and unset config variables of an env (a new config version)", patch_config,
                 {}, {}});
}

}  // namespace platform::api
