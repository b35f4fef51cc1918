#pragma once
// Releases of an env (docs/releases.md): the immutable rows of core.releases, the stream
// releases-<env id> whose newest EnvReleaseSet event says which one the env runs, and the views
// deploy, rollback and diff compare.
#include <pqxx/pqxx>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/json.h"

namespace platform::api {

struct Release {
  std::string id, org_id, app_id, env_id;
  int number = 0;
  std::string content_hash, image_digest, manifest_hash, manifest_source;
  Json image, manifest;
  std::int64_t config_version = 0, secrets_version = 0;
  std::string created_at, created_by, operation_id;
  // Without the manifest and its source unless `full`.
  Json to_json(bool full) const;
};

std::string releases_stream(const std::string& env_id);

// sha256 over the four parts that make a release: equal content, equal hash.
std::string content_hash(const std::string& image_digest, const std::string& manifest_hash,
                         std::int64_t config_version, std::int64_t secrets_version);

struct Current {
  std::int64_t stream_version = -1;  // of releases-<env id>; -1 before the first deploy
  std::optional<Release> release;    // what the env runs now
  std::string previous_release_id;   // what it ran before that ("" if nothing)
};
// In a writing transaction call lock_releases first.
Current current_release(pqxx::transaction_base& tx, const std::string& env_id);
void lock_releases(pqxx::work& tx, const std::string& env_id);

// What a receipt says of a release: id, number, name, image and digest, manifest hash, versions.
Json release_summary(const Release& r);
std::optional<Release> release_by_id(pqxx::transaction_base& tx, const std::string& id);
std::optional<Release> release_by_content(pqxx::transaction_base& tx, const std::string& env_id,
                                          const std::string& content_hash);
// "rel_…", "v3" or "3"; throws not_found naming the env and how to list its releases (`env_flags`: the
// --project/--app/--env that make that command exact).
Release find_release(pqxx::transaction_base& tx, const std::string& env_id, const std::string& env_name,
                     const std::string& env_flags, const std::string& id_or_number);
std::vector<Release> list_releases(pqxx::transaction_base& tx, const std::string& env_id, int limit);
void insert_release(pqxx::work& tx, const Release& r);

// The keys a release's manifest declares under "config" or "secrets" (required and optional).
std::set<std::string> declared_keys(const Json& manifest, const char* kind);

// The note on a config or secrets receipt (`kind` "config" or "secrets"): the new version runs only after
// a deploy, and keys the env's release does not declare would not be delivered by one. `flags` are the
// env's CLI flags (--project ... --env ...), for the commands the note gives.
std::string vars_pending_note(pqxx::transaction_base& tx, const std::string& env_id, const char* kind,
                              std::int64_t version, const Json& changed, const std::string& flags);

// An env's config or secrets as of version `version` (0: empty): NAME -> {...}.
Json vars_at(pqxx::transaction_base& tx, const std::string& kind, const std::string& env_id, std::int64_t version);

// The view release_diff compares: only the keys the manifest declares are delivered.
Json release_view(const Json& image, const Json& manifest, std::int64_t config_version, const Json& config_values,
                  std::int64_t secrets_version, const Json& secrets_values);
Json release_view(pqxx::transaction_base& tx, const Release& r);

// Keys set in the env that the manifest does not declare: {"config": [...], "secrets": [...]}.
Json undeclared_keys(const Json& manifest, const Json& config_values, const Json& secrets_values);

}  // namespace platform::api
