#include "api/env_vars.h"

#include "api/path.h"
#include "engine/db.h"
#include "engine/names.h"

namespace platform::api {

std::string vars_stream(const std::string& kind, const std::string& env_id) { return kind + "-" + env_id; }

VarsVersion latest_vars(pqxx::transaction_base& tx, const std::string& kind, const std::string& env_id) {
  VarsVersion v;
  auto r = tx.exec_params(
      "SELECT stream_version, data::text FROM events WHERE stream_name = $1 ORDER BY stream_version DESC LIMIT 1",
      vars_stream(kind, env_id));
  if (r.empty()) return v;
  v.stream_version = r[0][0].as<std::int64_t>();
  v.values = Json::parse(r[0][1].as<std::string>()).value("values", Json::object());
  return v;
}

void lock_vars(pqxx::work& tx, const std::string& kind, const std::string& env_id) {
  tx.exec_params("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "stream:" + vars_stream(kind, env_id));
}

void check_var_name(const std::string& k) {
  if (!valid_var_name(k))
    throw PlatformError(ErrorCode::invalid_request, "invalid variable name \"" + k.substr(0, 80) + "\"",
                        std::string(kVarNameRule));
  if (k.rfind("PLATFORM_", 0) == 0)
    throw PlatformError(ErrorCode::invalid_request, "\"" + k + "\" uses the reserved PLATFORM_ prefix",
                        "The platform sets PLATFORM_* variables itself; choose another name.");
}

std::vector<Resolved> env_chain(Context& ctx, Principal& p, const Params& params) {
  auto chain = resolve_path(ctx, p, params);
  if (chain.size() != 4 || chain.back().kind != "env")
    throw PlatformError(ErrorCode::not_found, "env not found", not_found_hint("env"));
  return chain;
}

Json env_resource_json(const Resolved& env, const std::string& path) {
  return {{"kind", "env"},         {"id", env.id},        {"name", env.name},
          {"path", path},          {"org_id", env.org_id}, {"parent_id", env.parent_id}};
}

std::string utc_now(pqxx::transaction_base& tx) {
  return tx.exec("SELECT " + db::sql_rfc3339("now()"))[0][0].as<std::string>();
}

}  // namespace platform::api
