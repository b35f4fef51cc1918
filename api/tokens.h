#pragma once
// API tokens as their users manage them (docs/tokens.md): list and revoke. Issuing is
// api::issue_token (auth.h). A token is its user's: another user's is not found, never forbidden.
#include <pqxx/pqxx>

#include <string>

#include "engine/json.h"

namespace platform::api {

// A token as lists show it, never its secret: {id, description, org_id, org_name, created_at,
// expires_at, revoked_at (null when not), state: active | expired | revoked, last_used_at (to the
// minute; null: never)}.
// The user's tokens, newest first; `org_scope` non-empty: only those restricted to that org (what a
// token restricted to it may see).
Json list_tokens(pqxx::transaction_base& tx, const std::string& user_id, const std::string& org_scope = "");

// Revokes token `token_id`. `owner` non-empty: only that user's token, and with `org_scope` only one
// restricted to that org (another's, or an unknown id, is not_found); `owner` empty: any (platformd, for
// operators). Appends TokenRevoked with `metadata` (who asked,
// request, operation). Revoking a revoked token changes nothing. Returns the token as list_tokens shows
// it, with "already_revoked".
Json revoke_token(pqxx::work& tx, const std::string& token_id, const std::string& owner, const std::string& org_scope,
                  const std::string& revoked_by, const Json& metadata);

}  // namespace platform::api
