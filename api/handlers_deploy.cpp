// Deploys and rollbacks: an env is pointed at a release, the immutable tuple (image digest, manifest
// hash, config version, secrets version). A deploy resolves the image through the registry, parses the
// manifest, checks the gates and appends ReleaseCreated (when the content is new) and EnvReleaseSet in
// one transaction that holds the env's releases lock. A dry run answers with a plan that --apply turns
// into exactly that deploy, or refuses when anything it was made against has moved (docs/releases.md).
#include <fmt/format.h>

#include <algorithm>

#include "api/body.h"
#include "api/env_vars.h"
#include "api/exposure.h"
#include "api/ipam.h"
#include "api/instances.h"
#include "api/metrics.h"
#include "api/mutation.h"
#include "api/path.h"
#include "api/release_diff.h"
#include "api/releases.h"
#include "api/routes.h"
#include "engine/db.h"
#include "engine/error_details.h"
#include "engine/ids.h"
#include "engine/manifest/manifest.h"
#include "engine/oci/registry.h"

namespace platform::api {
namespace {

constexpr std::size_t kMaxManifestBytes = 256 * 1024;
constexpr const char* kPlanFormat = "platform-plan 1";

struct Target {
  std::vector<Resolved> chain;
  const Resolved& app() const { return chain[2]; }
  const Resolved& env() const { return chain[3]; }
  std::string path() const { return path_of(chain); }
  // "--project P --app A --env E": what makes a suggested command exact.
  std::string flags() const { return env_flags(chain); }
};

// What a deploy would create: image, manifest and the versions of config and secrets, compared with
// what the env runs now.
struct Candidate {
  Json image;  // oci::ResolvedImage::to_json(), or the current release's
  std::string manifest_source, manifest_file;
  Json manifest;  // normalised for the env
  std::string manifest_hash;
};

struct Prepared {
  Current current;
  VarsVersion config, secrets;
  Json missing = Json::array();  // details of required keys without a value
  Json diff = Json::array();
  Json undeclared;
  Json stranded;  // CLI endpoints whose process the new manifest does not run
  std::string content_hash;
};

Json resolve_image(const std::string& text) {
  auto ref = oci::parse_image_ref(text);
  oci::RegistryClient registry;
  return registry.resolve(ref).to_json();
}

Candidate make_candidate(Json image, std::string source, std::string file, const Target& t) {
  if (source.size() > kMaxManifestBytes)
    throw PlatformError(ErrorCode::invalid_request, "the manifest is larger than 256 KiB",
                        "A platform.toml describes processes, endpoints and keys; keep data out of it.");
  auto parsed = manifest::parse(source, file);
  manifest::throw_if_invalid(parsed, file);
  if (parsed.manifest->app != t.app().name)
    throw PlatformError(ErrorCode::invalid_request,
                        fmt::format("{} declares app \"{}\" but the deploy targets app \"{}\"", file,
                                    parsed.manifest->app, t.app().name),
                        "Deploy from the app's own directory, or pass --app " + parsed.manifest->app + ".");
  // The manifest format has volumes; hosts do not provide them yet. Deploying anyway would let the process
  // write its data to the instance's own disk, gone when the instance is replaced: refuse, say so.
  if (!parsed.manifest->volumes.empty()) {
    std::string list;
    for (const auto& v : parsed.manifest->volumes)
      list += fmt::format("{}\"{}\" ({} MiB at {} for process {})", list.empty() ? "" : ", ", v.name, v.size_mib,
                          v.mount, v.process);
    throw PlatformError(ErrorCode::not_supported,
                        fmt::format("{} declares volume{} {}, and this platform does not provide volumes yet: the "
                                    "process would write to its instance's own disk, which is gone when the "
                                    "instance is replaced",
                                    file, parsed.manifest->volumes.size() == 1 ? "" : "s", list),
                        "Remove [[volumes]] from " + file +
                            " and keep the data outside the instances (a database or an object store reached over "
                            "the network). Nothing was deployed.");
  }
  Candidate c;
  c.image = std::move(image);
  c.manifest_source = std::move(source);
  c.manifest_file = std::move(file);
  c.manifest = manifest::to_json(manifest::for_env(*parsed.manifest, t.env().name));
  c.manifest_hash = oci::sha256_digest(c.manifest.dump());
  return c;
}

Prepared prepare(pqxx::transaction_base& tx, const Target& t, const Candidate& c) {
  Prepared p;
  const auto& env = t.env();
  p.current = current_release(tx, env.id);
  p.config = latest_vars(tx, "config", env.id);
  p.secrets = latest_vars(tx, "secrets", env.id);
  for (const auto& [kind, vars, label] :
       {std::tuple{"config", &p.config, "config"}, std::tuple{"secrets", &p.secrets, "secret"}}) {
    for (const auto& k : c.manifest[kind].value("required", Json::array())) {
      auto key = k.get<std::string>();
      if (vars->values.contains(key)) continue;
      auto command = std::string(kind) == "config"
                         ? fmt::format("platform config set {}=VALUE {}", key, t.flags())
                         : fmt::format("platform secrets set {}=- {} < FILE", key, t.flags());
      p.missing.push_back({{"kind", label},
                           {"key", key},
                           {"command", command},
                           {"text", fmt::format("{} {} is required and has no value in env {}: {}", label, key,
                                                env.name, command)}});
    }
  }
  auto to = release_view(c.image, c.manifest, p.config.version(), p.config.values, p.secrets.version(),
                         p.secrets.values);
  p.diff = diff_releases(p.current.release ? release_view(tx, *p.current.release) : Json(), to);
  p.undeclared = undeclared_keys(c.manifest, p.config.values, p.secrets.values);
  p.stranded = stranded_endpoints(tx, env.id, c.manifest, t.flags());
  p.content_hash = content_hash(c.image.value("digest", ""), c.manifest_hash, p.config.version(), p.secrets.version());
  return p;
}

void check_gates(const Prepared& p, const Target& t) {
  if (p.missing.empty()) return;
  std::string keys;
  for (const auto& m : p.missing) keys += (keys.empty() ? "" : ", ") + m["kind"].get<std::string>() + " " + m["key"].get<std::string>();
  throw DetailedError({ErrorCode::precondition_failed,
                       fmt::format("deploy refused: env {} has no value for {} required key{}: {}", t.env().name,
                                   p.missing.size(), p.missing.size() == 1 ? "" : "s", keys),
                       "Set each one with the command shown, then deploy again."},
                      p.missing);
}

Json plan_json(const Target& t, const Candidate& c, const Prepared& p) {
  return {{"format", kPlanFormat},
          {"env_id", t.env().id},
          {"env", t.path()},
          {"base_release_id", p.current.release ? Json(p.current.release->id) : Json()},
          {"config_version", p.config.version()},
          {"secrets_version", p.secrets.version()},
          {"image", c.image},
          {"manifest_file", c.manifest_file},
          {"manifest_source", c.manifest_source},
          {"manifest_hash", c.manifest_hash},
          {"content_hash", p.content_hash}};
}

// A plan is applied only onto exactly what it was made against.
void check_plan_fresh(const Json& plan, const Prepared& p, const Target& t) {
  auto base = plan.value("base_release_id", Json());
  std::string now = p.current.release ? p.current.release->id : "";
  std::string was = base.is_string() ? base.get<std::string>() : "";
  std::string why;
  if (now != was)
    why = fmt::format("env {} now runs {} but the plan was made against {}", t.env().name,
                      p.current.release ? "v" + std::to_string(p.current.release->number) + " (" + now + ")" : "nothing",
                      was.empty() ? "no release" : was);
  else if (plan.value("config_version", -1) != p.config.version())
    why = fmt::format("the config of env {} is at version {}, the plan was made with version {}", t.env().name,
                      p.config.version(), plan.value("config_version", -1));
  else if (plan.value("secrets_version", -1) != p.secrets.version())
    why = fmt::format("the secrets of env {} are at version {}, the plan was made with version {}", t.env().name,
                      p.secrets.version(), plan.value("secrets_version", -1));
  if (!why.empty())
    throw PlatformError(ErrorCode::precondition_failed, "the plan is stale: " + why,
                        "Make a new plan (platform deploy --plan FILE " + t.flags() + "), review it, then apply it.");
}

// A plan comes back from a file the user may have edited: every field it is read by must have its type.
void check_plan_shape(const Json& plan) {
  auto is = [&](const char* key, bool (Json::*type)() const noexcept) {
    return plan.contains(key) && (plan[key].*type)();
  };
  const bool base_ok = plan.contains("base_release_id") &&
                       (plan["base_release_id"].is_null() || plan["base_release_id"].is_string());
  const bool image_ok = is("image", &Json::is_object) && plan["image"].contains("ref") &&
                        plan["image"]["ref"].is_string() && plan["image"].contains("digest") &&
                        plan["image"]["digest"].is_string();
  if (!is("format", &Json::is_string) || plan["format"] != kPlanFormat || !is("env_id", &Json::is_string) ||
      !is("env", &Json::is_string) || !base_ok || !is("config_version", &Json::is_number_integer) ||
      !is("secrets_version", &Json::is_number_integer) || !image_ok || !is("manifest_source", &Json::is_string) ||
      !is("manifest_file", &Json::is_string))
    throw PlatformError(ErrorCode::invalid_request,
                        "this is not a deploy plan (format \"platform-plan 1\" with env_id, env, base_release_id, "
                        "config_version, secrets_version, image, manifest_file, manifest_source)",
                        "Make one with `platform deploy --plan FILE`; do not edit it.");
}

Target target_of(Context& ctx, Principal& p, const Params& params) { return Target{env_chain(ctx, p, params)}; }

// What to run after the env was pointed at `r`: wait for it first (the rollout is only starting). The
// way back names its release (`back_to`: what the env ran before `r`, if anything), so a command copied
// from the receipt later still means what it meant here; a rollback's own receipt offers none, since
// undoing it would bring back the release just left.
Json next_after(const Target& t, const Release& r, std::optional<std::int64_t> back_to) {
  auto next = Json::array({fmt::format("platform wait {}", t.flags()),
                           fmt::format("platform releases describe v{} {}", r.number, t.flags())});
  if (back_to) next.push_back(fmt::format("platform rollback v{} {}", *back_to, t.flags()));
  next.push_back(fmt::format("platform events --resource {}", r.id));
  return next;
}

// The number of the release the env ran before its current one, if any.
std::optional<std::int64_t> previous_number(pqxx::transaction_base& tx, const Current& current) {
  if (current.previous_release_id.empty()) return std::nullopt;
  auto prev = release_by_id(tx, current.previous_release_id);
  return prev ? std::optional<std::int64_t>(prev->number) : std::nullopt;
}

// Appends EnvReleaseSet pointing the env at `r`; `created` events come first when the release is new.
// What the release exposes is claimed first (a port or host name held elsewhere refuses the change), and
// the env's addresses are allocated when missing.
CommandReceipt point_env(pqxx::work& tx, const Actor& actor, const Target& t, const Current& current,
                         const Release& r, const std::string& reason, std::vector<events::NewEvent> created,
                         std::optional<std::int64_t> accept_ipv4_price) {
  const auto& env = t.env();
  claim_manifest_exposure(tx, env, r.manifest);
  auto addresses = ensure_env_addresses(tx, actor, env, r.manifest, accept_ipv4_price);
  Json data = {{"env_id", env.id},
               {"release_id", r.id},
               {"number", r.number},
               {"reason", reason},
               {"previous_release_id", current.release ? Json(current.release->id) : Json()},
               {"image_digest", r.image_digest},
               {"manifest_hash", r.manifest_hash},
               {"config_version", r.config_version},
               {"secrets_version", r.secrets_version}};
  created.push_back({uuid_to_string(new_uuid_v7()), "EnvReleaseSet", 1, data,
                     event_metadata(actor, env)});
  CommandOutcome out;
  out.resource_id = env.id;
  out.appended = events::append(tx, releases_stream(env.id), current.stream_version, created);
  // What the scheduler reads (core.env_runtime); the event above is the record of it.
  set_env_runtime(tx, env.id, env.org_id, r.id, std::nullopt);
  CommandReceipt receipt;
  receipt.last = out.last();
  receipt.receipt = {{"resource", env_resource_json(env, t.path())},
                     {"release", release_summary(r)},
                     {"events", out.events_json(releases_stream(env.id))},
                     {"addresses", addresses},
                     {"next", next_after(t, r,
                                         current.release && reason != "rollback"
                                             ? std::optional<std::int64_t>(current.release->number)
                                             : std::nullopt)}};
  return receipt;
}

Response post_deploy(Context& ctx, const Request& req, Principal& principal, const Params& params) {
  auto body = parse_body(req.body, {{"image", FieldType::string},
                                    {"manifest", FieldType::string},
                                    {"manifest_file", FieldType::string},
                                    {"dry_run", FieldType::boolean},
                                    {"check_gates", FieldType::boolean},
                                    {"plan", FieldType::object},
                                    {"accept_ipv4_price_cents_month", FieldType::integer}});
  std::optional<std::int64_t> accept_ipv4;
  if (body.contains("accept_ipv4_price_cents_month")) accept_ipv4 = body["accept_ipv4_price_cents_month"].get<std::int64_t>();
  const bool dry_run = body.value("dry_run", false);
  if (auto f = body.value("manifest_file", std::string());
      f.size() > 255 || std::any_of(f.begin(), f.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; }))
    throw PlatformError(ErrorCode::invalid_request, "manifest_file must be a file name of at most 255 printable bytes",
                        "It only names the file in error messages, e.g. \"platform.toml\".");
  const auto t = target_of(ctx, principal, params);
  const auto& env = t.env();
  std::optional<Json> plan;
  if (body.contains("plan")) {
    plan = body["plan"];
    if (body.contains("image") || body.contains("manifest") || dry_run)
      throw PlatformError(ErrorCode::invalid_request, "a plan is applied as it is: give \"plan\" alone",
                          "Make a new plan to change the image or the manifest.");
    check_plan_shape(*plan);
    if (plan->value("env_id", "") != env.id)
      throw PlatformError(ErrorCode::invalid_request,
                          "the plan was made for " + plan->value("env", std::string("another env")) + ", not " + t.path(),
                          "Apply it with the --project, --app and --env it was made for.");
  }

  // Inputs: the plan's, or the request's with the current release filling what is not given.
  Candidate candidate;
  if (plan) {
    // The plan pins a digest; check the registry still serves exactly it.
    auto ref = oci::parse_image_ref((*plan)["image"].value("ref", ""));
    ref.digest = (*plan)["image"].value("digest", "");
    auto image = resolve_image(ref.str());
    image["ref"] = (*plan)["image"].value("ref", "");
    candidate = make_candidate(image, (*plan)["manifest_source"], plan->value("manifest_file", "platform.toml"), t);
  } else {
    auto current = ctx.pool.read([&](pqxx::transaction_base& tx) { return current_release(tx, env.id); });
    Json image;
    if (body.contains("image")) {
      image = resolve_image(body["image"].get<std::string>());
    } else if (current.release) {
      image = current.release->image;  // the same digest: no re-resolution, no rebuild
    } else {
      throw PlatformError(ErrorCode::invalid_request, "env " + env.name + " has no release yet, so the image is needed",
                          "Give it: platform deploy --image REGISTRY/REPOSITORY:TAG");
    }
    std::string source, file = body.value("manifest_file", "platform.toml");
    if (body.contains("manifest")) {
      source = body["manifest"].get<std::string>();
    } else if (current.release) {
      source = current.release->manifest_source;
      file = "the current release's platform.toml";
    } else {
      throw PlatformError(ErrorCode::invalid_request, "env " + env.name + " has no release yet, so a manifest is needed",
                          "Run the deploy where platform.toml is, or pass --manifest PATH.");
    }
    candidate = make_candidate(std::move(image), std::move(source), std::move(file), t);
  }

  if (dry_run) {
    return ctx.pool.read([&](pqxx::transaction_base& tx) {
      auto p = prepare(tx, t, candidate);
      if (body.value("check_gates", true)) check_gates(p, t);
      const bool same = p.current.release && p.current.release->content_hash == p.content_hash;
      return json_response(200, {{"plan", plan_json(t, candidate, p)},
                                 {"changed", !same},
                                 {"current_release", p.current.release ? release_summary(*p.current.release) : Json()},
                                 {"diff", p.diff},
                                 {"missing", p.missing},
                                 {"not_delivered", p.undeclared},
                                 {"stranded_endpoints", p.stranded}});
    });
  }

  ctx.metrics.mutations_total++;
  return run_mutation(ctx, req, principal, "deploy", 200, [&](pqxx::work& tx, const Actor& actor) {
    lock_releases(tx, env.id);
    auto p = prepare(tx, t, candidate);
    if (plan) check_plan_fresh(*plan, p, t);
    check_gates(p, t);
    auto extra = [&](CommandReceipt& r) {
      r.receipt["diff"] = p.diff;
      r.receipt["not_delivered"] = p.undeclared;
      r.receipt["stranded_endpoints"] = p.stranded;
      r.receipt["config_version"] = p.config.version();
      r.receipt["secrets_version"] = p.secrets.version();
    };
    if (p.current.release && p.current.release->content_hash == p.content_hash) {
      const auto& cur = *p.current.release;
      CommandReceipt r;
      r.duplicate = true;
      r.receipt = {{"resource", env_resource_json(env, t.path())},
                   {"release", release_summary(cur)},
                   {"created", false},
                   {"events", Json::array()},
                   {"next", next_after(t, cur, previous_number(tx, p.current))},
                   {"note", fmt::format("nothing changed: env {} already runs v{} ({}) with this image, manifest, "
                                        "config and secrets",
                                        env.name, cur.number, cur.id)}};
      extra(r);
      return r;
    }
    std::vector<events::NewEvent> created;
    auto existing = release_by_content(tx, env.id, p.content_hash);
    Release rel;
    if (existing) {
      rel = *existing;  // the same content deployed before: the same release, no new number
    } else {
      auto n = tx.exec_params("SELECT coalesce(max(number), 0) + 1 FROM core.releases WHERE env_id = $1", env.id);
      rel.id = new_id("rel");
      rel.org_id = env.org_id;
      rel.app_id = t.app().id;
      rel.env_id = env.id;
      rel.number = n[0][0].as<int>();
      rel.content_hash = p.content_hash;
      rel.image_digest = candidate.image.value("digest", "");
      rel.image = candidate.image;
      rel.manifest_hash = candidate.manifest_hash;
      rel.manifest = candidate.manifest;
      rel.manifest_source = candidate.manifest_source;
      rel.config_version = p.config.version();
      rel.secrets_version = p.secrets.version();
      rel.created_by = actor.user_id;
      rel.operation_id = actor.operation_id;
      insert_release(tx, rel);
      rel = *release_by_id(tx, rel.id);
      Json data = rel.to_json(false);
      created.push_back({uuid_to_string(new_uuid_v7()), "ReleaseCreated", 1, data,
                         event_metadata(actor, env.org_id, "release", rel.id, env.id, "v" + std::to_string(rel.number))});
    }
    auto r = point_env(tx, actor, t, p.current, rel, "deploy", std::move(created), accept_ipv4);
    r.receipt["created"] = !existing.has_value();
    if (existing)
      r.receipt["note"] = fmt::format("the same content as v{} ({}): the env now runs that release again", rel.number,
                                      rel.id);
    extra(r);
    return r;
  });
}

Response post_rollback(Context& ctx, const Request& req, Principal& principal, const Params& params) {
  auto body = parse_body(req.body, {{"release", FieldType::string}, {"accept_ipv4_price_cents_month", FieldType::integer}});
  std::optional<std::int64_t> accept_ipv4;
  if (body.contains("accept_ipv4_price_cents_month")) accept_ipv4 = body["accept_ipv4_price_cents_month"].get<std::int64_t>();
  const auto t = target_of(ctx, principal, params);
  const auto& env = t.env();
  ctx.metrics.mutations_total++;
  return run_mutation(ctx, req, principal, "rollback", 200, [&](pqxx::work& tx, const Actor& actor) {
    lock_releases(tx, env.id);
    auto current = current_release(tx, env.id);
    if (!current.release)
      throw PlatformError(ErrorCode::precondition_failed, "env " + env.name + " has no release to roll back from",
                          "Deploy first: platform deploy --image REF " + t.flags());
    Release target;
    if (body.contains("release")) {
      target = find_release(tx, env.id, env.name, t.flags(), body["release"].get<std::string>());
    } else if (current.previous_release_id.empty()) {
      throw PlatformError(ErrorCode::precondition_failed,
                          fmt::format("nothing to roll back to: v{} is the first release env {} ran", current.release->number,
                                      env.name),
                          "Deploy a fixed release instead: platform deploy --image REF " + t.flags());
    } else {
      target = *release_by_id(tx, current.previous_release_id);
    }
    auto diff = diff_releases(release_view(tx, *current.release), release_view(tx, target));
    if (target.id == current.release->id) {
      CommandReceipt r;
      r.duplicate = true;
      r.receipt = {{"resource", env_resource_json(env, t.path())},
                   {"release", release_summary(target)},
                   {"diff", diff},
                   {"events", Json::array()},
                   {"next", next_after(t, target, previous_number(tx, current))},
                   {"note", fmt::format("nothing changed: env {} already runs v{} ({})", env.name, target.number,
                                        target.id)}};
      return r;
    }
    auto r = point_env(tx, actor, t, current, target, "rollback", {}, accept_ipv4);
    r.receipt["diff"] = diff;
    r.receipt["stranded_endpoints"] = stranded_endpoints(tx, env.id, target.manifest, t.flags());
    r.receipt["rolled_back_from"] = release_summary(*current.release);
    r.receipt["note"] = fmt::format("env {} runs v{} ({}) again: the same image digest, manifest and config and "
                                    "secrets versions, nothing rebuilt",
                                    env.name, target.number, target.id);
    return r;
  });
}

Response get_releases(Context& ctx, const Request& req, Principal& principal, const Params& params) {
  const auto t = target_of(ctx, principal, params);
  int limit = 50;
  if (auto l = req.param("limit"); !l.empty()) {
    if (l.size() > 4 || l.find_first_not_of("0123456789") != std::string::npos || std::stoi(l) < 1 || std::stoi(l) > 500)
      throw PlatformError(ErrorCode::invalid_request, "limit must be an integer from 1 to 500", "e.g. ?limit=20");
    limit = std::stoi(l);
  }
  return ctx.pool.read([&](pqxx::transaction_base& tx) {
    auto current = current_release(tx, t.env().id);
    Json list = Json::array();
    for (const auto& r : list_releases(tx, t.env().id, limit)) {
      auto j = r.to_json(false);
      j["current"] = current.release && current.release->id == r.id;
      list.push_back(std::move(j));
    }
    return json_response(200, {{"env_id", t.env().id},
                               {"path", t.path()},
                               {"current_release_id", current.release ? Json(current.release->id) : Json()},
                               {"releases", list}});
  });
}

Response get_release(Context& ctx, const Request&, Principal& principal, const Params& params) {
  const auto t = target_of(ctx, principal, params);
  return ctx.pool.read([&](pqxx::transaction_base& tx) {
    auto r = find_release(tx, t.env().id, t.env().name, t.flags(), params.at("release"));
    auto current = current_release(tx, t.env().id);
    auto j = r.to_json(true);
    j["current"] = current.release && current.release->id == r.id;
    auto view = release_view(tx, r);
    j["delivered"] = {{"config", view["config"]["keys"]}, {"secrets", view["secrets"]["keys"]}};
    j["not_delivered"] = undeclared_keys(r.manifest, vars_at(tx, "config", r.env_id, r.config_version),
                                         vars_at(tx, "secrets", r.env_id, r.secrets_version));
    Json history = Json::array();
    for (const auto& row : tx.exec_params(
             "SELECT " + db::sql_rfc3339("recorded_at") + ", data->>'reason',"
             " metadata->>'actor', metadata->>'operation_id' FROM events WHERE stream_name = $1"
             " AND type = 'EnvReleaseSet' AND data->>'release_id' = $2 ORDER BY stream_version",
             releases_stream(t.env().id), r.id))
      history.push_back({{"at", row[0].as<std::string>()},
                         {"reason", row[1].as<std::string>()},
                         {"actor", row[2].as<std::string>()},
                         {"operation_id", row[3].as<std::string>()}});
    j["history"] = history;
    return json_response(200, j);
  });
}

// What changed from one release to another: `from` (default: the release numbered just below) to
// {release}. The first release compares with nothing: everything in it is added.
Response get_release_diff(Context& ctx, const Request& req, Principal& principal, const Params& params) {
  const auto t = target_of(ctx, principal, params);
  const auto from_ref = req.param("from");
  return ctx.pool.read([&](pqxx::transaction_base& tx) {
    auto to = find_release(tx, t.env().id, t.env().name, t.flags(), params.at("release"));
    std::optional<Release> from;
    if (!from_ref.empty()) from = find_release(tx, t.env().id, t.env().name, t.flags(), from_ref);
    else if (to.number > 1) from = find_release(tx, t.env().id, t.env().name, t.flags(), std::to_string(to.number - 1));
    auto changes = diff_releases(from ? release_view(tx, *from) : Json(), release_view(tx, to));
    auto name_of = [](const Release& r) {
      return Json{{"id", r.id}, {"name", "v" + std::to_string(r.number)}, {"image", r.image.value("ref", "")},
                  {"image_digest", r.image_digest}, {"created_at", r.created_at}};
    };
    return json_response(200, {{"env_id", t.env().id},
                               {"from", from ? name_of(*from) : Json()},
                               {"to", name_of(to)},
                               {"changed", !changes.empty()},
                               {"changes", changes}});
  });
}

}  // namespace

void add_deploy_routes(std::vector<Route>& out) {
  const std::string base = "/v1/orgs/{org}/projects/{project}/apps/{app}/envs/{env}";
  out.push_back({"POST", base + "/deploys",
                 "Deploy: resolve the image, check the gates, create or reuse a release and point the env at it "
                 "(dry_run: a plan and the diff; plan: apply a plan)",
                 post_deploy, {}, {}});
  out.push_back({"POST", base + "/rollback", "Point the env at a release it ran before (the previous one by default)",
                 post_rollback, {}, {}});
  out.push_back({"GET", base + "/releases", "An env's releases, newest first, with the current one marked",
                 get_releases, {}, {}});
  out.push_back({"GET", base + "/releases/{release}",
                 "One release: image, manifest, config and secrets versions, delivered keys and its deploy history",
                 get_release, {}, {}});
  out.push_back({"GET", base + "/releases/{release}/diff",
                 "What changed from one release to another (?from=RELEASE; default: the release before it)",
                 get_release_diff, {}, {}});
}

}  // namespace platform::api
