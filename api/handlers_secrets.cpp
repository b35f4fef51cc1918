// An env's secrets: like config (one SecretsVersionCreated event per version, holding the whole set), but
// every value is sealed with AES-256-GCM before it reaches the database, and no answer ever holds a value:
// only names, sizes and keyed digests (docs/secrets.md).
#include <fmt/format.h>

#include "api/body.h"
#include "api/env_vars.h"
#include "api/metrics.h"
#include "api/mutation.h"
#include "api/path.h"
#include "api/releases.h"
#include "api/routes.h"
#include "engine/crypto.h"
#include "engine/db.h"
#include "engine/ids.h"

namespace platform::api {
namespace {

constexpr std::size_t kMaxValueBytes = 64 * 1024, kMaxKeys = 500;
const std::string kKind = "secrets";

const secrets::Key& current_key(const Context& ctx) {
  if (ctx.secret_keys.empty())
    throw PlatformError(ErrorCode::unavailable, "secrets are not configured on this server",
                        "Start platformd serve with --secrets-key FILE (platformd dev creates one).");
  return ctx.secret_keys.front();
}

// What may be shown of a sealed value: never the value, nor its ciphertext.
Json public_json(const std::string& name, const Json& sealed) {
  return {{"name", name},
          {"digest", sealed.value("digest", "")},
          {"bytes", sealed.value("bytes", 0)},
          {"version", sealed.value("version", 0)},
          {"set_by", sealed.value("set_by", "")},
          {"set_at", sealed.value("set_at", "")}};
}

Response get_secrets(Context& ctx, const Request&, Principal& p, const Params& params) {
  auto chain = env_chain(ctx, p, params);
  auto s = ctx.pool.read([&](pqxx::transaction_base& tx) { return latest_vars(tx, kKind, chain.back().id); });
  Json list = Json::array();
  for (const auto& [name, sealed] : s.values.items()) list.push_back(public_json(name, sealed));
  return json_response(200, {{"env_id", chain.back().id}, {"path", path_of(chain)}, {"version", s.version()},
                             {"secrets", list}});
}

Response patch_secrets(Context& ctx, const Request& req, Principal& p, const Params& params) {
  const auto& key = current_key(ctx);
  auto body = parse_body(req.body, {{"set", FieldType::object_of_strings}, {"unset", FieldType::array_of_strings}});
  auto set_b64 = body.value("set", Json::object());
  auto unset = body.value("unset", Json::array());
  if (set_b64.empty() && unset.empty())
    throw PlatformError(ErrorCode::invalid_request, "nothing to change: give \"set\" and/or \"unset\"",
                        "e.g. {\"set\": {\"API_KEY\": \"<base64 of the value>\"}}");
  std::map<std::string, std::string> set;  // NAME -> plaintext, only in this request's memory
  for (auto it = set_b64.begin(); it != set_b64.end(); ++it) {
    check_var_name(it.key());
    auto value = base64_decode(it.value().get<std::string>());
    if (!value)
      throw PlatformError(ErrorCode::invalid_request, "the value of " + it.key() + " is not base64",
                          "Secret values are sent base64-encoded, so any bytes can be a secret.");
    if (value->size() > kMaxValueBytes)
      throw PlatformError(ErrorCode::invalid_request, "the value of " + it.key() + " is larger than 64 KiB",
                          "Keep large files in a volume; store their key or password as the secret.");
    set[it.key()] = std::move(*value);
  }
  for (const auto& k : unset) {
    check_var_name(k.get<std::string>());
    if (set.count(k.get<std::string>()))
      throw PlatformError(ErrorCode::invalid_request, k.get<std::string>() + " is both set and unset",
                          "Give each secret once.");
  }
  auto chain = env_chain(ctx, p, params);
  const auto env = chain.back();
  const auto path = path_of(chain);
  ctx.metrics.mutations_total++;
  return run_mutation(ctx, req, p, "secrets.set", 200, [&](pqxx::work& tx, const Actor& actor) {
    lock_vars(tx, kKind, env.id);  // changes to one env's secrets are serialised
    auto s = latest_vars(tx, kKind, env.id);
    const auto next = s.version() + 1;
    const auto now = utc_now(tx);
    Json values = s.values, changed = Json::array(), removed = Json::array(), diff = Json::array();
    for (const auto& [name, value] : set) {
      auto digest = secrets::digest(key, value);
      auto old = values.find(name);
      if (old != values.end() && old->value("digest", "") == digest) continue;  // already that value
      auto sealed = secrets::seal(key, value, env.id + "/" + name);
      diff.push_back({{"action", old == values.end() ? "add" : "change"}, {"kind", "secret"}, {"key", name},
                      {"summary", fmt::format("{} {} ({} bytes, {})", old == values.end() ? "add" : "change", name,
                                              value.size(), digest)},
                      {"digest", digest}});
      values[name] = {{"key_id", sealed.key_id}, {"nonce", sealed.nonce}, {"ciphertext", sealed.ciphertext},
                      {"digest", digest},        {"bytes", value.size()}, {"version", next},
                      {"set_by", actor.user_id}, {"set_at", now}};
      changed.push_back(name);
    }
    for (const auto& k : unset) {
      auto name = k.get<std::string>();
      if (!values.contains(name)) continue;
      diff.push_back({{"action", "remove"}, {"kind", "secret"}, {"key", name}, {"summary", "remove " + name}});
      values.erase(name);
      removed.push_back(name);
    }
    if (values.size() > kMaxKeys)
      throw PlatformError(ErrorCode::invalid_request, fmt::format("an env holds at most {} secrets", kMaxKeys),
                          "Unset secrets you no longer need.");
    CommandReceipt r;
    Json resource = env_resource_json(env, path);
    Json next_commands = Json::array({"platform secrets list " + env_flags(chain),
                                      fmt::format("platform events --resource {}", env.id)});
    if (diff.empty()) {
      r.duplicate = true;
      r.receipt = {{"resource", resource}, {"secrets_version", s.version()}, {"diff", diff}, {"events", Json::array()},
                   {"next", next_commands}, {"note", "nothing changed: every value was already so"}};
      return r;
    }
    Json data = {{"env_id", env.id}, {"version", next}, {"set", changed}, {"unset", removed}, {"values", values}};
    CommandOutcome out;
    out.resource_id = env.id;
    out.appended = events::append(tx, vars_stream(kKind, env.id), s.stream_version,
                                  {{uuid_to_string(new_uuid_v7()), "SecretsVersionCreated", 1, data,
                                    event_metadata(actor, env)}});
    r.last = out.last();
    next_commands.insert(next_commands.begin(), "platform diff " + env_flags(chain));
    r.receipt = {{"resource", resource}, {"secrets_version", next}, {"diff", diff},
                 {"events", out.events_json(vars_stream(kKind, env.id))}, {"next", next_commands},
                 {"note", vars_pending_note(tx, env.id, "secrets", next, changed, env_flags(chain))}};
    return r;
  }, secrets::digest(key, req.method + " " + req.path + "\n" + req.body));
}

}  // namespace

void add_secrets_routes(std::vector<Route>& out) {
  const std::string base = "/v1/orgs/{org}/projects/{project}/apps/{app}/envs/{env}/secrets";
  out.push_back({"GET", base, "An env's secrets: names, sizes, digests, versions; never values", get_secrets, {}, {}});
  out.push_back({"PATCH", base, "Set (base64 values) and unset secrets of an env (a new secrets version)",
                 patch_secrets, {}, {}});
}

}  // namespace platform::api
