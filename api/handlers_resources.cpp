// Orgs, projects, apps and envs: list, create, describe and delete, nested by path, plus lookup by ID.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <map>
#include <span>

#include "api/body.h"
#include "api/metrics.h"
#include "api/mutation.h"
#include "api/path.h"
#include "api/resources.h"
#include "api/routes.h"
#include "engine/db.h"
#include "engine/error_details.h"

namespace platform::api {
namespace {

Json registry_json(const Resolved& r) {
  // Used only when the projection has not folded a just-created resource yet.
  return {{"id", r.id}, {"kind", r.kind}, {"org_id", r.org_id}, {"parent_id", r.parent_id},
          {"name", r.name}, {"state", r.deleted ? "deleted" : "active"}, {"projection", "pending"}};
}

// What each env runs, for `platform env list`, in one query: its release, its live instances and how many
// of them serve (running, and healthy or without a health check), and the addresses it holds.
void add_env_summaries(pqxx::transaction_base& tx, Json& envs) {
  Json ids = Json::array();
  for (const auto& e : envs) ids.push_back(e.value("id", ""));
  std::map<std::string, Json> by_id;
  for (const auto& r : tx.exec_params(
           "SELECT e.id, rel.id, rel.number,"
           " (SELECT count(*) FROM core.instances i WHERE i.env_id = e.id AND i.desired = 'run'"
           "   AND i.state NOT IN ('stopped', 'lost')),"
           " (SELECT count(*) FROM core.instances i WHERE i.env_id = e.id AND i.desired = 'run'"
           "   AND i.state = 'running' AND i.health IN ('healthy', 'none')),"
           " (SELECT coalesce(jsonb_agg(host(a.address) ORDER BY a.family DESC), '[]'::jsonb)::text"
           "   FROM core.ip_allocations a WHERE a.env_id = e.id AND a.released_at IS NULL)"
           " FROM jsonb_array_elements_text($1::jsonb) AS e(id)"
           " LEFT JOIN core.env_runtime rt ON rt.env_id = e.id LEFT JOIN core.releases rel ON rel.id = rt.release_id",
           ids.dump()))
    by_id[r[0].as<std::string>()] = {
        {"release", r[1].is_null() ? Json(nullptr)
                                   : Json{{"id", r[1].as<std::string>()}, {"name", "v" + r[2].as<std::string>()}}},
        {"instances", r[3].as<std::int64_t>()},
        {"serving", r[4].as<std::int64_t>()},
        {"addresses", Json::parse(r[5].as<std::string>())}};
  for (auto& e : envs)
    if (auto it = by_id.find(e.value("id", "")); it != by_id.end()) e["runtime"] = it->second;
}

Response list(const KindInfo& kind, Context& ctx, const Request& req, Principal& p, const Params& params) {
  for (const auto& [k, v] : req.query)
    if (k != "deleted")
      throw PlatformError(ErrorCode::invalid_request, "unknown query parameter \"" + k + "\"",
                          "This endpoint takes only ?deleted=true.");
  bool deleted = req.param("deleted") == "true";
  auto chain = resolve_path(ctx, p, params);
  std::string parent = chain.empty() ? "" : chain.back().id;
  auto items = ctx.pool.read([&](pqxx::transaction_base& tx) {
    std::vector<std::string> orgs;
    if (chain.empty()) {
      for (const auto& r : tx.exec_params("SELECT org_id FROM core.memberships WHERE user_id = $1", p.user_id))
        if (p.org_restriction.empty() || p.org_restriction == r[0].as<std::string>())
          orgs.push_back(r[0].as<std::string>());
    } else {
      orgs.push_back(chain.front().id);
    }
    auto out = list_resources(tx, std::string(kind.kind), parent, orgs, deleted);
    if (kind.kind == "env") add_env_summaries(tx, out);
    return out;
  });
  return json_response(200, {{"items", items}, {"count", items.size()}});
}

// What to do in a resource just made, with the flags that name it (the org's only for a new org; the
// others come from the CLI context): make its first child, or deploy into a new env.
std::string first_step_in(const std::vector<Resolved>& parents, const KindInfo& kind, const std::string& name) {
  std::string flags;
  for (std::size_t i = 1; i < parents.size(); ++i) flags += " --" + parents[i].kind + " " + parents[i].name;
  flags += " --" + std::string(kind.kind) + " " + name;
  if (kind.kind == "org") return "platform project create NAME" + flags;
  if (kind.kind == "project") return "platform app create NAME" + flags;
  if (kind.kind == "app") return "platform env create NAME" + flags;
  return "platform deploy --image IMAGE" + flags;
}

Response create(const KindInfo& kind, Context& ctx, const Request& req, Principal& p, const Params& params) {
  auto body = parse_body(req.body, {{"name", FieldType::string, true},
                                    {"description", FieldType::string},
                                    {"labels", FieldType::object_of_strings}});
  auto name = body["name"].get<std::string>();
  validate_name(std::string(kind.kind), name);
  auto description = body.value("description", std::string());
  if (description.size() > 1000)
    throw PlatformError(ErrorCode::invalid_request, "description is longer than 1000 characters", "Shorten it.");
  auto labels = body.value("labels", Json::object());
  auto chain = resolve_path(ctx, p, params);
  if (kind.kind != "org" && !p.org_restriction.empty() && chain.front().id != p.org_restriction)
    throw PlatformError(ErrorCode::not_found, "org not found", not_found_hint("org"));
  if (kind.kind == "org" && !p.org_restriction.empty())
    throw PlatformError(ErrorCode::precondition_failed, "this token is limited to one org and cannot create orgs",
                        "Use a user token that is not limited to an org.");
  ctx.metrics.mutations_total++;
  const std::string org_id = chain.empty() ? "" : chain.front().id;
  const std::string parent_id = chain.empty() ? "" : chain.back().id;
  const std::string path = (chain.empty() ? "" : path_of(chain) + "/") + std::string(kind.kind) + "/" + name;
  return run_mutation(ctx, req, p, std::string(kind.kind) + ".create", 201, [&](pqxx::work& tx, const Actor& actor) {
    auto out = create_resource(tx, actor, kind, org_id, parent_id, name, description, labels);
    CommandReceipt r;
    r.last = out.last();
    r.duplicate = out.duplicate;
    r.receipt = {
        {"resource", {{"kind", kind.kind}, {"id", out.resource_id}, {"name", name}, {"path", path},
                      {"org_id", kind.kind == "org" ? out.resource_id : org_id}, {"parent_id", parent_id}}},
        {"desired", {{"name", name}, {"description", description}, {"labels", labels}, {"state", "active"}}},
        {"diff", Json::array({{{"action", "create"}, {"kind", kind.kind}, {"path", path},
                               {"summary", fmt::format("create {} {}", kind.kind, path)}}})},
        {"events", out.events_json(std::string(kind.kind) + "-" + out.resource_id)},
        {"next", Json::array({first_step_in(chain, kind, name),
                              fmt::format("platform {} describe {}", kind.kind, out.resource_id),
                              fmt::format("platform events --resource {}", out.resource_id),
                              fmt::format("platform wait {}", actor.operation_id)})}};
    return r;
  });
}

Response describe(Context& ctx, const Request&, Principal& p, const Params& params) {
  auto chain = resolve_path(ctx, p, params);
  const auto& target = chain.back();
  auto out = ctx.pool.read([&](pqxx::transaction_base& tx) {
    auto j = read_resource(tx, target.id);
    Json one = Json::array({j ? *j : registry_json(target)});
    if (target.kind == "env" && !target.deleted) add_env_summaries(tx, one);  // what it runs, as env list says
    return one[0];
  });
  out["path"] = path_of(chain);
  return json_response(200, out);
}

// A resource with live children cannot be deleted: refused (412) naming them, with the command that
// deletes the one child, or lists them, with the flags that make it exact. core.delete_resource refuses
// it too (a child made meanwhile), in fewer words.
void refuse_if_parent(pqxx::transaction_base& tx, const std::vector<Resolved>& chain) {
  const auto& target = chain.back();
  auto rows = tx.exec_params("SELECT kind, name, count(*) OVER () FROM core.resources WHERE parent_id = $1"
                             " AND deleted_at IS NULL ORDER BY kind, name LIMIT 5",
                             target.id);
  if (rows.empty()) return;
  const auto total = rows[0][2].as<std::int64_t>();
  const auto kind = rows[0][0].as<std::string>();
  std::vector<std::string> names;
  for (const auto& r : rows) names.push_back(r[1].as<std::string>());
  std::string flags;  // the child's parents, as flags
  for (const auto& r : chain) flags += " --" + r.kind + " " + r.name;
  if (chain.size() > 1) flags = flags.substr(flags.find(" --", 1));  // the org comes from the context
  const auto listed = fmt::format("{}{}", fmt::join(names, ", "), total > static_cast<std::int64_t>(names.size()) ? ", …" : "");
  throw PlatformError(
      ErrorCode::precondition_failed,
      fmt::format("{} {} still has {} {}{}: {}", target.kind, target.name, total, kind, total == 1 ? "" : "s", listed),
      total == 1 ? fmt::format("Delete it first: platform {} delete {}{}", kind, names[0], flags)
                 : fmt::format("Delete them first (platform {} list{} lists them), then this {}.", kind, flags, target.kind));
}

// Deleting an env that runs instances or holds addresses stops them and gives the addresses up for good
// (another env may get them): refused (412) unless the request confirms it with ?confirm=<the env's
// name>. The details say what would go, and carry `confirm`, so a client can show it and ask.
void refuse_if_live(pqxx::transaction_base& tx, const std::vector<Resolved>& chain, const std::string& confirm) {
  const auto& env = chain.back();
  if (env.kind != "env" || confirm == env.name) return;
  const auto running = tx.exec_params("SELECT count(*) FROM core.instances WHERE env_id = $1"
                                      " AND state NOT IN ('stopped', 'lost')",
                                      env.id)[0][0]
                           .as<std::int64_t>();
  const auto release = tx.exec_params("SELECT 'v' || r.number FROM core.env_runtime rt JOIN core.releases r"
                                      " ON r.id = rt.release_id WHERE rt.env_id = $1",
                                      env.id);
  std::vector<std::string> held;
  for (const auto& r : tx.exec_params("SELECT family, host(address) FROM core.ip_allocations WHERE env_id = $1"
                                      " AND released_at IS NULL ORDER BY family DESC",
                                      env.id))
    held.push_back(fmt::format("ipv{} {}", r[0].as<int>(), r[1].as<std::string>()));
  if (running == 0 && held.empty()) return;
  std::vector<std::string> parts;
  if (running > 0)
    parts.push_back(fmt::format("runs {} instance{}{}", running, running == 1 ? "" : "s",
                                release.empty() ? "" : " of release " + release[0][0].as<std::string>()));
  if (!held.empty()) parts.push_back(fmt::format("holds {}", fmt::join(held, " and ")));
  const auto what = fmt::format("env {} {}", env.name, fmt::join(parts, " and "));
  std::string flags;
  for (std::size_t i = 1; i + 1 < chain.size(); ++i) flags += " --" + chain[i].kind + " " + chain[i].name;
  Json details = Json::array({{{"text", what + ": deleting it stops every instance and gives its addresses up for "
                                            "good (another env may get them)"},
                               {"confirm", env.name},
                               {"instances", running},
                               {"addresses", held}}});
  throw DetailedError({ErrorCode::precondition_failed, what + "; deleting it needs confirmation",
                       "Delete it anyway with `platform env delete " + env.name + flags +
                           " --yes` (API: ?confirm=" + env.name + "). To stop it but keep the env and its "
                           "addresses, scale its processes to 0."},
                      details);
}

Response remove_resolved(Context& ctx, const Request& req, Principal& p, const std::vector<Resolved>& chain) {
  const auto target = chain.back();
  if (!p.org_restriction.empty() && target.kind == "org")
    throw PlatformError(ErrorCode::precondition_failed, "this token is limited to one org and cannot delete it",
                        "Use a user token that is not limited to an org.");
  std::optional<std::int64_t> expected;
  if (auto m = req.header("if-match"); !m.empty()) {
    if (!m.empty() && m.front() == '"' && m.back() == '"' && m.size() >= 2) m = m.substr(1, m.size() - 2);
    char* end = nullptr;
    long long v = std::strtoll(m.c_str(), &end, 10);
    if (m.empty() || *end != '\0' || v < 0)
      throw PlatformError(ErrorCode::invalid_request, "If-Match must be a resource version (an integer)",
                          "Send the \"version\" of the resource you last read.");
    expected = v;
  }
  ctx.metrics.mutations_total++;
  const auto path = path_of(chain);
  return run_mutation(ctx, req, p, target.kind + ".delete", 200, [&](pqxx::work& tx, const Actor& actor) {
    refuse_if_parent(tx, chain);
    refuse_if_live(tx, chain, req.param("confirm"));
    auto out = delete_resource(tx, actor, target, expected);
    CommandReceipt r;
    r.last = out.last();
    r.duplicate = out.duplicate;
    r.receipt = {
        {"resource", {{"kind", target.kind}, {"id", target.id}, {"name", target.name}, {"path", path},
                      {"org_id", target.org_id}, {"parent_id", target.parent_id}}},
        {"desired", {{"state", "deleted"}}},
        {"diff", Json::array({{{"action", "delete"}, {"kind", target.kind}, {"path", path},
                               {"summary", fmt::format("delete {} {}", target.kind, path)}}})},
        {"events", out.events_json(target.kind + "-" + target.id)},
        {"next", Json::array({fmt::format("platform events --resource {}", target.id),
                              fmt::format("platform wait {}", actor.operation_id)})}};
    return r;
  });
}

Response remove(Context& ctx, const Request& req, Principal& p, const Params& params) {
  return remove_resolved(ctx, req, p, resolve_path(ctx, p, params));
}

// The resource and its ancestors, by ID; another org's (or an unknown) ID is "not found".
std::vector<Resolved> chain_of_id(Context& ctx, Principal& p, const std::string& id) {
  auto chain = ctx.pool.read([&](pqxx::transaction_base& tx) {
    std::vector<Resolved> out;
    auto cur = resolve_id(tx, id);
    while (cur) {
      out.insert(out.begin(), *cur);
      cur = cur->parent_id.empty() ? std::nullopt : resolve_id(tx, cur->parent_id);
    }
    return out;
  });
  if (chain.empty() || !ctx.auth.can_access_org(p, chain.back().org_id))
    throw PlatformError(ErrorCode::not_found, "resource \"" + id.substr(0, 100) + "\" not found",
                        "Check the ID; `platform events --resource ID` shows a resource's history.");
  return chain;
}

Response remove_by_id(Context& ctx, const Request& req, Principal& p, const Params& params) {
  auto chain = chain_of_id(ctx, p, params.at("id"));
  if (chain.back().deleted)
    throw PlatformError(ErrorCode::not_found, chain.back().kind + " " + chain.back().id + " is already deleted",
                        "`platform events --resource " + chain.back().id + "` shows when and by whom.");
  return remove_resolved(ctx, req, p, chain);
}

// An instance or a release by its ID (they live in their env, not in core.resources): what it is, its
// name and the env that holds it, so a client can go on to its env's routes.
std::optional<Response> run_or_release_by_id(Context& ctx, Principal& p, const std::string& id) {
  const bool instance = id.rfind("ins_", 0) == 0;
  if (!instance && id.rfind("rel_", 0) != 0) return std::nullopt;
  auto row = ctx.pool.read([&](pqxx::transaction_base& tx) {
    return tx.exec_params(instance ? "SELECT env_id, name FROM core.instances WHERE id = $1"
                                   : "SELECT env_id, 'v' || number FROM core.releases WHERE id = $1",
                          id);
  });
  if (row.empty())
    throw PlatformError(ErrorCode::not_found, "resource \"" + id.substr(0, 100) + "\" not found",
                        "Check the ID; `platform events --resource ID` shows a resource's history.");
  const auto env_id = row[0][0].as<std::string>(), name = row[0][1].as<std::string>();
  auto chain = chain_of_id(ctx, p, env_id);  // another org's: not found, as for any other ID
  const std::string kind = instance ? "instance" : "release";
  return json_response(200, Json{{"id", id},
                                 {"kind", kind},
                                 {"name", name},
                                 {"org_id", chain.back().org_id},
                                 {"parent_id", env_id},
                                 {"path", path_of(chain) + "/" + kind + "/" + name}});
}

Response by_id(Context& ctx, const Request&, Principal& p, const Params& params) {
  const auto& id = params.at("id");
  if (auto r = run_or_release_by_id(ctx, p, id)) return std::move(*r);
  auto chain = chain_of_id(ctx, p, id);
  const auto* found = &chain.back();
  auto j = ctx.pool.read([&](pqxx::transaction_base& tx) { return read_resource(tx, found->id); });
  Json out = j ? *j : registry_json(*found);
  out["path"] = path_of(chain);
  return json_response(200, out);
}

}  // namespace

void add_resource_routes(std::vector<Route>& out) {
  std::string prefix = "/v1";
  for (auto kind_name : kChain) {
    const auto& kind = *kind_by_name(kind_name);
    std::string collection = prefix + "/" + std::string(kind.collection);
    std::string item = collection + "/{" + std::string(kind.kind) + "}";
    out.push_back({"GET", collection, fmt::format("List {}", kind.collection),
                   [&kind](Context& c, const Request& r, Principal& p, const Params& ps) { return list(kind, c, r, p, ps); },
                   {}, {}});
    out.push_back({"POST", collection, fmt::format("Create a {}", kind.kind),
                   [&kind](Context& c, const Request& r, Principal& p, const Params& ps) { return create(kind, c, r, p, ps); },
                   {}, {}});
    out.push_back({"GET", item, fmt::format("Describe a {}", kind.kind), describe, {}, {}});
    out.push_back({"DELETE", item, fmt::format("Delete a {} (an event; the history stays)", kind.kind), remove, {}, {}});
    prefix = item;
  }
  out.push_back({"GET", "/v1/resources/{id}", "Describe any resource by ID (org, project, app, env, instance, release)", by_id, {}, {}});
  out.push_back({"DELETE", "/v1/resources/{id}", "Delete any resource by ID", remove_by_id, {}, {}});
}

}  // namespace platform::api
