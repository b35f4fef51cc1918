#include "api/resources.h"

#include <array>

#include "api/exposure.h"
#include "api/ipam.h"
#include "engine/error.h"
#include "engine/ids.h"
#include "engine/payloads.h"
#include "engine/suggest.h"
#include "engine/typed_events.h"

namespace platform::api {
namespace {
constexpr std::array kKinds = {
    KindInfo{"org", "orgs", "org", "Org", ""},
    KindInfo{"project", "projects", "prj", "Project", "org"},
    KindInfo{"app", "apps", "app", "App", "project"},
    KindInfo{"env", "envs", "env", "Env", "app"},
};

constexpr const char* kResourceColumns =
    "id, kind, org_id, coalesce(parent_id, ''), name, description, labels::text,"
    " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), created_by,"
    " to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
    " coalesce(to_char(deleted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), ''),"
    " coalesce(deleted_by, ''), version, last_operation,"
    " coalesce((SELECT u.name FROM core.users u WHERE u.id = read_model.resources.created_by), '')";

Json row_json(const pqxx::row& r) {
  Json j = {{"id", r[0].as<std::string>()},
            {"kind", r[1].as<std::string>()},
            {"org_id", r[2].as<std::string>()},
            {"parent_id", r[3].as<std::string>()},
            {"name", r[4].as<std::string>()},
            {"description", r[5].as<std::string>()},
            {"labels", Json::parse(r[6].as<std::string>())},
            {"created_at", r[7].as<std::string>()},
            {"created_by", r[8].as<std::string>()},
            {"created_by_name", r[14].as<std::string>()},
            {"updated_at", r[9].as<std::string>()},
            {"version", r[12].as<std::int64_t>()},
            {"last_operation", r[13].as<std::string>()}};
  auto deleted_at = r[10].as<std::string>();
  j["state"] = deleted_at.empty() ? "active" : "deleted";
  if (!deleted_at.empty()) {
    j["deleted_at"] = deleted_at;
    j["deleted_by"] = r[11].as<std::string>();
  }
  return j;
}

// `rows` answer `e`, the one event the procedure was given.
CommandOutcome outcome_from(const pqxx::result& rows, std::string id, const events::NewEvent& e) {
  CommandOutcome out;
  out.resource_id = std::move(id);
  for (const auto& r : rows) {
    out.appended.push_back({r[0].as<std::int64_t>(), r[1].as<std::uint64_t>(), r[2].as<std::int64_t>(),
                            r[3].as<std::string>(), r[4].as<bool>(), e.type});
    out.duplicate = out.duplicate || r[4].as<bool>();
  }
  return out;
}
}  // namespace

Json event_metadata(const Actor& a, const std::string& org_id, const std::string& kind, const std::string& id,
                    const std::string& parent_id, const std::string& name) {
  Json m = {{"actor", a.user_id},          {"request_id", a.request_id}, {"operation_id", a.operation_id},
            {"operation_kind", a.operation_kind}, {"org_id", org_id},     {"resource_kind", kind},
            {"resource_id", id}};
  if (!name.empty()) m["resource_name"] = name;
  if (!a.user_name.empty()) m["actor_name"] = a.user_name;
  if (!parent_id.empty()) m["parent_id"] = parent_id;
  return m;
}

Json event_metadata(const Actor& a, const Resolved& r) {
  return event_metadata(a, r.org_id, r.kind, r.id, r.parent_id, r.name);
}


const KindInfo* kind_by_name(std::string_view kind) {
  for (const auto& k : kKinds)
    if (k.kind == kind) return &k;
  return nullptr;
}
const KindInfo* kind_by_collection(std::string_view collection) {
  for (const auto& k : kKinds)
    if (k.collection == collection) return &k;
  return nullptr;
}
const KindInfo* kind_by_prefix(std::string_view prefix) {
  for (const auto& k : kKinds)
    if (k.prefix == prefix) return &k;
  return nullptr;
}

events::Cursor CommandOutcome::last() const {
  events::Cursor c;
  for (const auto& a : appended) c = std::max(c, events::Cursor{a.tx, a.position});
  return c;
}

Json CommandOutcome::events_json(const std::string& stream) const {
  Json arr = Json::array();
  for (const auto& a : appended)
    arr.push_back({{"position", a.position},
                   {"cursor", events::Cursor{a.tx, a.position}.encode()},
                   {"stream", stream},
                   {"stream_version", a.stream_version},
                   {"event_id", a.event_id},
                   {"type", a.type}});
  return arr;
}

namespace {
// "Did you mean "shop"? List what exists with `platform app list --project shop`.": the closest live
// name under the same parent (never for orgs: the other orgs are not the caller's to know of), and the
// list command with the parents' flags, so it works when pasted.
std::string not_found_hint(pqxx::transaction_base& tx, const KindInfo& kind, const std::string& parent_id,
                           const std::string& name) {
  std::string flags, hint;
  for (std::string id = parent_id; !id.empty();) {
    auto r = tx.exec_params("SELECT kind, name, coalesce(parent_id, '') FROM core.resources WHERE id = $1", id);
    if (r.empty() || r[0][0].as<std::string>() == "org") break;
    flags = " --" + r[0][0].as<std::string>() + " " + r[0][1].as<std::string>() + flags;
    id = r[0][2].as<std::string>();
  }
  if (!parent_id.empty() && !name.empty()) {
    std::vector<std::string> names;
    for (const auto& r : tx.exec_params("SELECT name FROM core.resources WHERE kind = $1 AND parent_id = $2"
                                        " AND deleted_at IS NULL ORDER BY name LIMIT 1000",
                                        std::string(kind.kind), parent_id))
      names.push_back(r[0].as<std::string>());
    const auto close = did_you_mean(name, std::vector<std::string_view>(names.begin(), names.end()));
    if (!close.empty()) hint = "Did you mean \"" + close + "\"? ";
  }
  return hint + "List what exists with `platform " + std::string(kind.kind) + " list" + flags + "`.";
}
}  // namespace

Resolved resolve(pqxx::transaction_base& tx, const KindInfo& kind, const std::string& parent_id,
                 const std::string& id_or_name) {
  std::string prefix;
  bool by_id = looks_like_id(id_or_name, &prefix) && prefix == kind.prefix;
  auto rows = tx.exec_params(
      std::string("SELECT id, kind, org_id, coalesce(parent_id, ''), name FROM core.resources"
                  " WHERE kind = $1 AND deleted_at IS NULL AND coalesce(parent_id, '') = $2 AND ") +
          (by_id ? "id = $3" : "name = $3"),
      std::string(kind.kind), parent_id, id_or_name);
  if (rows.empty())
    throw PlatformError(ErrorCode::not_found, std::string(kind.kind) + " \"" + id_or_name.substr(0, 100) + "\" not found",
                        not_found_hint(tx, kind, parent_id, by_id ? "" : id_or_name));
  const auto& r = rows[0];
  return {r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<std::string>(),
          r[4].as<std::string>(), false};
}

std::optional<Resolved> resolve_id(pqxx::transaction_base& tx, const std::string& id) {
  auto rows = tx.exec_params(
      "SELECT id, kind, org_id, coalesce(parent_id, ''), name, deleted_at IS NOT NULL FROM core.resources WHERE id = $1",
      id);
  if (rows.empty()) return std::nullopt;
  const auto& r = rows[0];
  return Resolved{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<std::string>(),
                  r[4].as<std::string>(), r[5].as<bool>()};
}

CommandOutcome create_resource(pqxx::work& tx, const Actor& actor, const KindInfo& kind, const std::string& org_id,
                               const std::string& parent_id, const std::string& name, const std::string& description,
                               const Json& labels) {
  auto id = new_id(kind.prefix);
  auto org = kind.kind == "org" ? id : org_id;
  auto e = events::encode(std::string(kind.type) + "Created", events::ResourceCreated{name, description, labels},
                          event_metadata(actor, org, std::string(kind.kind), id, parent_id, name));
  auto rows = tx.exec_params("SELECT * FROM core.create_resource($1, $2, $3, NULLIF($4, ''), $5, $6, $7::jsonb)",
                             std::string(kind.kind), id, org, parent_id, name, actor.user_id,
                             events::to_json({e}).dump());
  return outcome_from(rows, id, e);
}

CommandOutcome delete_resource(pqxx::work& tx, const Actor& actor, const Resolved& target,
                               std::optional<std::int64_t> expected_version) {
  const auto* kind = kind_by_name(target.kind);
  auto e = events::encode(std::string(kind->type) + "Deleted", events::ResourceDeleted{target.name},
                          event_metadata(actor, target));
  auto rows = expected_version
                  ? tx.exec_params("SELECT * FROM core.delete_resource($1, $2::jsonb, $3)", target.id,
                                   events::to_json({e}).dump(), *expected_version)
                  : tx.exec_params("SELECT * FROM core.delete_resource($1, $2::jsonb)", target.id,
                                   events::to_json({e}).dump());
  auto out = outcome_from(rows, target.id, e);
  if (target.kind == "env" && !out.duplicate) {
    // A deleted env gives back its addresses (their last hours recorded) and everything it exposed.
    release_env_addresses(tx, actor, target);
    drop_claims(tx, target.id);
    tx.exec_params("UPDATE core.endpoints SET deleted_at = now() WHERE env_id = $1 AND deleted_at IS NULL", target.id);
  }
  return out;
}

std::optional<Json> read_resource(pqxx::transaction_base& tx, const std::string& id) {
  auto rows = tx.exec_params(std::string("SELECT ") + kResourceColumns + " FROM read_model.resources WHERE id = $1", id);
  if (rows.empty()) return std::nullopt;
  return row_json(rows[0]);
}

Json list_resources(pqxx::transaction_base& tx, const std::string& kind, const std::string& parent_id,
                    const std::vector<std::string>& org_ids, bool include_deleted) {
  std::string orgs = "{";
  for (std::size_t i = 0; i < org_ids.size(); ++i) orgs += (i ? "," : "") + org_ids[i];
  orgs += "}";
  auto rows = tx.exec_params(std::string("SELECT ") + kResourceColumns +
                                 " FROM read_model.resources WHERE kind = $1 AND coalesce(parent_id, '') = $2"
                                 " AND org_id = ANY($3::text[]) AND ($4 OR deleted_at IS NULL) ORDER BY name, id",
                             kind, parent_id, orgs, include_deleted);
  Json arr = Json::array();
  for (const auto& r : rows) arr.push_back(row_json(r));
  return arr;
}

}  // namespace platform::api
