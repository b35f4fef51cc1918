#include "api/tokens.h"

#include "engine/db.h"
#include "engine/error.h"
#include "engine/event_store.h"
#include "engine/payloads.h"
#include "engine/typed_events.h"

namespace platform::api {
namespace {

// The columns token_json reads, FROM the tokens with their org's name (a WHERE may follow).
std::string token_select() {
  return "t.id, t.description, coalesce(t.org_id, ''), coalesce(o.name, ''), " + db::sql_rfc3339("t.created_at") +
         ", " + db::sql_rfc3339("t.expires_at") + ", " + db::sql_rfc3339("t.revoked_at") +
         ", CASE WHEN t.revoked_at IS NOT NULL THEN 'revoked' WHEN t.expires_at <= now() THEN 'expired'"
         " ELSE 'active' END, t.user_id, " + db::sql_rfc3339("t.last_used_at") +
         " FROM core.tokens t LEFT JOIN core.resources o ON o.id = t.org_id";
}

Json token_json(const pqxx::row& r) {
  auto nullable = [&](int i) { return r[i].is_null() ? Json(nullptr) : Json(r[i].as<std::string>()); };
  return {{"id", r[0].as<std::string>()},      {"description", r[1].as<std::string>()},
          {"org_id", r[2].as<std::string>()},  {"org_name", r[3].as<std::string>()},
          {"created_at", r[4].as<std::string>()}, {"expires_at", nullable(5)},
          {"revoked_at", nullable(6)},         {"state", r[7].as<std::string>()},
          {"last_used_at", nullable(9)}};
}

}  // namespace

Json list_tokens(pqxx::transaction_base& tx, const std::string& user_id, const std::string& org_scope) {
  Json out = Json::array();
  for (const auto& r : tx.exec_params("SELECT " + token_select() +
                                          " WHERE t.user_id = $1 AND ($2 = '' OR t.org_id = $2)"
                                          " ORDER BY t.created_at DESC, t.id DESC",
                                      user_id, org_scope))
    out.push_back(token_json(r));
  return out;
}

Json revoke_token(pqxx::work& tx, const std::string& token_id, const std::string& owner, const std::string& org_scope,
                  const std::string& revoked_by, const Json& metadata) {
  // FOR UPDATE: two revokes of one token record one TokenRevoked.
  auto r = tx.exec_params("SELECT " + token_select() +
                              " WHERE t.id = $1 AND ($2 = '' OR t.user_id = $2) AND ($3 = '' OR t.org_id = $3)"
                              " FOR UPDATE OF t",
                          token_id, owner, org_scope);
  if (r.empty())
    throw PlatformError(ErrorCode::not_found, "no token " + token_id.substr(0, 80),
                        owner.empty() ? "List tokens with `platformd token list`."
                                      : "List your tokens with `platform token list`.");
  auto out = token_json(r[0]);
  out["already_revoked"] = out["state"] == "revoked";
  if (out["already_revoked"]) return out;
  const auto user_id = r[0][8].as<std::string>();
  auto revoked = tx.exec_params("UPDATE core.tokens SET revoked_at = now(), revoked_by = $2 WHERE id = $1 RETURNING " +
                                    db::sql_rfc3339("revoked_at"),
                                token_id, revoked_by);
  out["revoked_at"] = revoked[0][0].as<std::string>();
  out["state"] = "revoked";
  Json meta = {{"actor", revoked_by},
               {"resource_kind", "token"},
               {"resource_id", token_id},
               {"resource_name", out["description"]}};
  if (const auto org = out["org_id"].get<std::string>(); !org.empty()) meta["org_id"] = org;
  meta.update(metadata);
  events::append(tx, "token-" + token_id, std::nullopt,
                 {events::encode("TokenRevoked", events::TokenRevoked{user_id, revoked_by}, meta)});
  return out;
}

}  // namespace platform::api
