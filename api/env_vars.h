#pragma once
// What config and secrets share: an env's variables as versions, each version one event in the stream
// <kind>-<env id> holding the whole resulting set (docs/config.md, docs/secrets.md).
#include <pqxx/pqxx>

#include <cstdint>
#include <string>
#include <vector>

#include "api/auth.h"
#include "api/context.h"
#include "api/http.h"
#include "api/resources.h"
#include "engine/json.h"

namespace platform::api {

struct VarsVersion {
  std::int64_t stream_version = -1;  // -1: never changed
  Json values = Json::object();      // NAME -> {... , version, set_by, set_at}
  std::int64_t version() const { return stream_version + 1; }
};

// "config-<env id>", "secrets-<env id>".
std::string vars_stream(const std::string& kind, const std::string& env_id);

// The newest version of an env's variables. In a writing transaction, call lock_vars first.
VarsVersion latest_vars(pqxx::transaction_base& tx, const std::string& kind, const std::string& env_id);
// Serialises changes to one env's variables (the lock events::append takes on the same stream).
void lock_vars(pqxx::work& tx, const std::string& kind, const std::string& env_id);

// Variable names: letters, digits and '_', not starting with a digit, never PLATFORM_*.
void check_var_name(const std::string& name);

// The env of a /v1/orgs/.../envs/{env}/... path, with its ancestors.
std::vector<Resolved> env_chain(Context& ctx, Principal& p, const Params& params);

// The env as a receipt's "resource".
Json env_resource_json(const Resolved& env, const std::string& path);

// The current UTC time as the API writes timestamps.
std::string utc_now(pqxx::transaction_base& tx);

}  // namespace platform::api
