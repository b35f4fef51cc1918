#include "api/releases.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <set>

#include "api/env_vars.h"
#include "engine/crypto.h"
#include "engine/db.h"
#include "engine/error.h"

namespace platform::api {
namespace {

const std::string kColumns =
    "id, org_id, app_id, env_id, number, content_hash, image_digest, image::text, manifest_hash, manifest::text,"
    " manifest_source, config_version, secrets_version, " + db::sql_rfc3339("created_at") + ", created_by, operation_id";

Release from_row(const pqxx::row& r) {
  Release x;
  x.id = r[0].as<std::string>();
  x.org_id = r[1].as<std::string>();
  x.app_id = r[2].as<std::string>();
  x.env_id = r[3].as<std::string>();
  x.number = r[4].as<int>();
  x.content_hash = r[5].as<std::string>();
  x.image_digest = r[6].as<std::string>();
  x.image = Json::parse(r[7].as<std::string>());
  x.manifest_hash = r[8].as<std::string>();
  x.manifest = Json::parse(r[9].as<std::string>());
  x.manifest_source = r[10].as<std::string>();
  x.config_version = r[11].as<std::int64_t>();
  x.secrets_version = r[12].as<std::int64_t>();
  x.created_at = r[13].as<std::string>();
  x.created_by = r[14].as<std::string>();
  x.operation_id = r[15].as<std::string>();
  return x;
}

std::optional<Release> one(const pqxx::result& r) {
  if (r.empty()) return std::nullopt;
  return from_row(r[0]);
}

}  // namespace

Json Release::to_json(bool full) const {
  Json j = {{"id", id},
            {"number", number},
            {"name", "v" + std::to_string(number)},
            {"org_id", org_id},
            {"app_id", app_id},
            {"env_id", env_id},
            {"image", image},
            {"image_digest", image_digest},
            {"manifest_hash", manifest_hash},
            {"config_version", config_version},
            {"secrets_version", secrets_version},
            {"content_hash", content_hash},
            {"created_at", created_at},
            {"created_by", created_by},
            {"operation_id", operation_id}};
  if (full) {
    j["manifest"] = manifest;
    j["manifest_source"] = manifest_source;
  }
  return j;
}

std::string releases_stream(const std::string& env_id) { return "releases-" + env_id; }

std::string content_hash(const std::string& image_digest, const std::string& manifest_hash,
                         std::int64_t config_version, std::int64_t secrets_version) {
  return "sha256:" + sha256_hex(fmt::format("platform-release 1\nimage {}\nmanifest {}\nconfig {}\nsecrets {}\n",
                                            image_digest, manifest_hash, config_version, secrets_version));
}

void lock_releases(pqxx::work& tx, const std::string& env_id) {
  tx.exec_params("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "stream:" + releases_stream(env_id));
}

Current current_release(pqxx::transaction_base& tx, const std::string& env_id) {
  Current c;
  auto v = tx.exec_params("SELECT max(stream_version) FROM events WHERE stream_name = $1", releases_stream(env_id));
  if (v.empty() || v[0][0].is_null()) return c;
  c.stream_version = v[0][0].as<std::int64_t>();
  auto r = tx.exec_params(
      "SELECT data->>'release_id', coalesce(data->>'previous_release_id', '') FROM events"
      " WHERE stream_name = $1 AND type = 'EnvReleaseSet' ORDER BY stream_version DESC LIMIT 1",
      releases_stream(env_id));
  if (r.empty()) return c;
  c.release = release_by_id(tx, r[0][0].as<std::string>());
  c.previous_release_id = r[0][1].as<std::string>();
  return c;
}

Json release_summary(const Release& r) {
  return {{"id", r.id},
          {"number", r.number},
          {"name", "v" + std::to_string(r.number)},
          {"image", r.image.value("ref", "")},
          {"image_digest", r.image_digest},
          {"manifest_hash", r.manifest_hash},
          {"config_version", r.config_version},
          {"secrets_version", r.secrets_version}};
}

std::optional<Release> release_by_id(pqxx::transaction_base& tx, const std::string& id) {
  return one(tx.exec_params(fmt::format("SELECT {} FROM core.releases WHERE id = $1", kColumns), id));
}

std::optional<Release> release_by_content(pqxx::transaction_base& tx, const std::string& env_id,
                                          const std::string& hash) {
  return one(tx.exec_params(fmt::format("SELECT {} FROM core.releases WHERE env_id = $1 AND content_hash = $2", kColumns),
                            env_id, hash));
}

Release find_release(pqxx::transaction_base& tx, const std::string& env_id, const std::string& env_name,
                     const std::string& env_flags, const std::string& ref) {
  std::optional<Release> r;
  std::string digits = ref.size() > 1 && ref[0] == 'v' ? ref.substr(1) : ref;
  if (ref.rfind("rel_", 0) == 0) {
    r = release_by_id(tx, ref);
    if (r && r->env_id != env_id) r.reset();  // another env's release is not this env's to run
  } else if (!digits.empty() && digits.size() < 9 &&
             digits.find_first_not_of("0123456789") == std::string::npos) {
    r = one(tx.exec_params(fmt::format("SELECT {} FROM core.releases WHERE env_id = $1 AND number = $2", kColumns),
                           env_id, std::stoi(digits)));
  }
  if (!r)
    throw PlatformError(ErrorCode::not_found,
                        "env " + env_name + " has no release \"" + ref.substr(0, 80) + "\"",
                        "Name a release by id (rel_…) or number (v3); list them with `platform releases list " +
                            env_flags + "`.");
  return *r;
}

std::vector<Release> list_releases(pqxx::transaction_base& tx, const std::string& env_id, int limit) {
  std::vector<Release> out;
  for (const auto& row :
       tx.exec_params(fmt::format("SELECT {} FROM core.releases WHERE env_id = $1 ORDER BY number DESC LIMIT $2",
                                  kColumns),
                      env_id, limit))
    out.push_back(from_row(row));
  return out;
}

void insert_release(pqxx::work& tx, const Release& r) {
  tx.exec_params(
      "INSERT INTO core.releases (id, org_id, app_id, env_id, number, content_hash, image_digest, image,"
      " manifest_hash, manifest, manifest_source, config_version, secrets_version, created_by, operation_id)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10::jsonb, $11, $12, $13, $14, $15)",
      r.id, r.org_id, r.app_id, r.env_id, r.number, r.content_hash, r.image_digest, r.image.dump(), r.manifest_hash,
      r.manifest.dump(), r.manifest_source, r.config_version, r.secrets_version, r.created_by, r.operation_id);
}

std::set<std::string> declared_keys(const Json& manifest, const char* kind) {
  std::set<std::string> out;
  if (!manifest.contains(kind)) return out;
  for (const char* part : {"required", "optional"})
    for (const auto& k : manifest[kind].value(part, Json::array())) out.insert(k.get<std::string>());
  return out;
}

std::string vars_pending_note(pqxx::transaction_base& tx, const std::string& env_id, const char* kind,
                              std::int64_t version, const Json& changed, const std::string& flags) {
  const auto current = current_release(tx, env_id);  // read for the note only: no lock needed
  if (!current.release)
    return fmt::format("{} v{} is stored; the env's first deploy delivers it (platform deploy --image IMAGE {})", kind,
                       version, flags);
  const auto& r = *current.release;
  auto note = fmt::format("{} v{} is not running yet: release v{} runs {} v{} until the next deploy", kind, version,
                          r.number, kind, std::string(kind) == "config" ? r.config_version : r.secrets_version);
  const auto declared = declared_keys(r.manifest, kind);
  std::vector<std::string> undeclared;
  for (const auto& k : changed)
    if (!declared.count(k.get<std::string>())) undeclared.push_back(k.get<std::string>());
  if (!undeclared.empty())
    note += fmt::format(". {} {} not declared in release v{}'s platform.toml ([{}] required or optional), so a deploy "
                        "would not deliver {}",
                        fmt::join(undeclared, ", "), undeclared.size() == 1 ? "is" : "are", r.number, kind,
                        undeclared.size() == 1 ? "it" : "them");
  return note;
}

Json vars_at(pqxx::transaction_base& tx, const std::string& kind, const std::string& env_id, std::int64_t version) {
  if (version <= 0) return Json::object();
  auto r = tx.exec_params("SELECT data->'values' FROM events WHERE stream_name = $1 AND stream_version = $2",
                          vars_stream(kind, env_id), version - 1);
  if (r.empty() || r[0][0].is_null()) return Json::object();
  return Json::parse(r[0][0].as<std::string>());
}

Json release_view(const Json& image, const Json& manifest, std::int64_t config_version, const Json& config_values,
                  std::int64_t secrets_version, const Json& secrets_values) {
  Json config = Json::object(), secrets = Json::object();
  for (const auto& k : declared_keys(manifest, "config"))
    if (config_values.contains(k)) config[k] = config_values[k].value("version", 0);
  for (const auto& k : declared_keys(manifest, "secrets"))
    if (secrets_values.contains(k)) secrets[k] = secrets_values[k].value("digest", "");
  return {{"image", {{"ref", image.value("ref", "")}, {"digest", image.value("digest", "")}}},
          {"manifest", manifest},
          {"config", {{"version", config_version}, {"keys", config}}},
          {"secrets", {{"version", secrets_version}, {"keys", secrets}}}};
}

Json release_view(pqxx::transaction_base& tx, const Release& r) {
  return release_view(r.image, r.manifest, r.config_version, vars_at(tx, "config", r.env_id, r.config_version),
                      r.secrets_version, vars_at(tx, "secrets", r.env_id, r.secrets_version));
}

Json undeclared_keys(const Json& manifest, const Json& config_values, const Json& secrets_values) {
  Json out = {{"config", Json::array()}, {"secrets", Json::array()}};
  auto c = declared_keys(manifest, "config"), s = declared_keys(manifest, "secrets");
  for (auto it = config_values.begin(); it != config_values.end(); ++it)
    if (!c.count(it.key())) out["config"].push_back(it.key());
  for (auto it = secrets_values.begin(); it != secrets_values.end(); ++it)
    if (!s.count(it.key())) out["secrets"].push_back(it.key());
  return out;
}

}  // namespace platform::api
