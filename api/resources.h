#pragma once
// Orgs, projects, apps and envs: their kinds, resolution of "id or name" within a parent, the commands
// that create and delete them, and their JSON form.
#include <pqxx/pqxx>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/event_store.h"
#include "engine/json.h"

namespace platform::api {

struct KindInfo {
  std::string_view kind;        // "app"
  std::string_view collection;  // "apps"
  std::string_view prefix;      // ID prefix: "app"
  std::string_view type;        // event type stem: "App"
  std::string_view parent;      // parent kind, "" for org
};

const KindInfo* kind_by_name(std::string_view kind);
const KindInfo* kind_by_collection(std::string_view collection);
const KindInfo* kind_by_prefix(std::string_view prefix);

struct Resolved {
  std::string id, kind, org_id, parent_id, name;
  bool deleted = false;
};

// Finds a live resource of `kind` under `parent_id` by ID or name (the command-side registry, so a
// resource is found as soon as its create returned). Throws not_found naming what was looked for.
Resolved resolve(pqxx::transaction_base& tx, const KindInfo& kind, const std::string& parent_id,
                 const std::string& id_or_name);
// By ID alone, deleted ones included; nullopt when unknown.
std::optional<Resolved> resolve_id(pqxx::transaction_base& tx, const std::string& id);

struct Actor {
  std::string user_id;
  std::string request_id;
  std::string operation_id;
  std::string operation_kind;  // e.g. "app.create"
  std::string user_name;       // recorded beside the id (metadata actor_name), so the trail says who in words
};

// The metadata every event of a command carries (actor, request, operation, org, resource). The
// resource's name goes in too (resource_name), so `platform events` and the audit views can say which
// env a ConfigVersionCreated or an EnvReleaseSet was about without looking the id up.
Json event_metadata(const Actor& actor, const std::string& org_id, const std::string& kind, const std::string& id,
                    const std::string& parent_id, const std::string& name);
// The same for a resolved resource (an env, usually).
Json event_metadata(const Actor& actor, const Resolved& resource);

struct CommandOutcome {
  std::string resource_id;
  std::vector<events::Appended> appended;
  bool duplicate = false;
  events::Cursor last() const;
  Json events_json(const std::string& stream) const;
};

CommandOutcome create_resource(pqxx::work& tx, const Actor& actor, const KindInfo& kind, const std::string& org_id,
                               const std::string& parent_id, const std::string& name, const std::string& description,
                               const Json& labels);
// expected_version: the version the caller last saw (If-Match); a stale one fails with version_conflict.
CommandOutcome delete_resource(pqxx::work& tx, const Actor& actor, const Resolved& target,
                               std::optional<std::int64_t> expected_version = std::nullopt);

// The read-model row as JSON; nullopt when the projection has not folded it (yet).
std::optional<Json> read_resource(pqxx::transaction_base& tx, const std::string& id);
Json list_resources(pqxx::transaction_base& tx, const std::string& kind, const std::string& parent_id,
                    const std::vector<std::string>& org_ids, bool include_deleted);

}  // namespace platform::api
