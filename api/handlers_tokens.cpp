// API tokens, managed by their users (docs/tokens.md): create one (the secret is shown once), list
// yours, revoke one. Not through run_mutation: its Idempotency-Key store would keep the secret; a
// retried create issues another token, which its user can see and revoke.
#include <algorithm>

#include "api/body.h"
#include "api/metrics.h"
#include "api/resources.h"
#include "api/routes.h"
#include "api/tokens.h"
#include "engine/db.h"
#include "engine/duration.h"

namespace platform::api {
namespace {

constexpr auto kMaxTtl = std::chrono::hours(24 * 3650);

Json actor_metadata(const Request& req, const Principal& p) {
  return {{"actor", p.user_id}, {"actor_name", p.user_name}, {"request_id", req.request_id}};
}

Response post_token(Context& ctx, const Request& req, Principal& p, const Params&) {
  auto body = parse_body(req.body, {{"description", FieldType::string, true},
                                    {"org", FieldType::string},
                                    {"ttl", FieldType::string}});
  const auto description = body["description"].get<std::string>();
  const bool one_line = std::none_of(description.begin(), description.end(),
                                     [](unsigned char c) { return c < 0x20 || c == 0x7f; });
  if (description.empty() || description.size() > 200 || !one_line)
    throw PlatformError(ErrorCode::invalid_request, "description must be one line of 1 to 200 characters",
                        "Say what the token is for, e.g. {\"description\": \"CI deploys of shop\"}: the list shows it "
                        "when you decide which one to revoke.");
  std::optional<std::chrono::seconds> ttl;
  if (body.contains("ttl")) {
    auto d = parse_duration(body["ttl"].get<std::string>());
    if (!d || *d < std::chrono::minutes(1) || *d > kMaxTtl)
      throw PlatformError(ErrorCode::invalid_request, "ttl must be a duration from 1m to 3650d",
                          "e.g. {\"ttl\": \"90d\"}; leave it out for a token that does not expire.");
    ttl = std::chrono::duration_cast<std::chrono::seconds>(*d);
  }
  // A token gives at most what the one asking has: it cannot outlive the token that creates it (a leaked
  // token cannot mint a lasting one), and an org-restricted token makes tokens for its org only.
  if (!p.token_expires_at.empty()) {
    const auto left = std::chrono::seconds(ctx.pool.read([&](pqxx::transaction_base& tx) {
      return tx.exec_params("SELECT floor(extract(epoch FROM $1::timestamptz - now()))::bigint", p.token_expires_at)[0][0]
          .as<std::int64_t>();
    }));
    if (left < std::chrono::minutes(1))
      throw PlatformError(ErrorCode::invalid_request,
                          "your token expires at " + p.token_expires_at + ", too soon to make another from it",
                          "Create it with a token that expires later (or never).");
    if (!ttl) {
      ttl = left;
    } else if (*ttl > left) {
      throw PlatformError(ErrorCode::invalid_request,
                          "a token cannot outlive the one that creates it: yours expires at " + p.token_expires_at,
                          "Ask for a --ttl of at most " + format_duration(left) +
                              ", or create it with a token that expires later (or never).");
    }
  }
  std::string org_id, org_name;
  const auto org_ref = body.value("org", std::string());
  if (org_ref.empty() && !p.org_restriction.empty())
    throw PlatformError(ErrorCode::precondition_failed,
                        "this token acts in one org only: it cannot create a token for every org",
                        "Name the org (\"org\", `platform token create --org`): the new token acts there alone.");
  if (!org_ref.empty()) {
    require_org(ctx, p, org_ref, &org_id);
    org_name = ctx.pool.read([&](pqxx::transaction_base& tx) { return resolve_id(tx, org_id)->name; });
  }
  ctx.metrics.mutations_total++;
  auto t = ctx.pool.transact([&](pqxx::work& tx) {
    return issue_token(tx, p.user_id, org_id, description, ttl, actor_metadata(req, p));
  });
  Json out = {{"id", t.token_id},
              {"token", t.secret},
              {"description", description},
              {"org_id", org_id},
              {"org_name", org_name},
              {"expires_at", t.expires_at.empty() ? Json(nullptr) : Json(t.expires_at)},
              {"user", p.user_name}};
  out["next"] = Json::array({"platform login --token - --name NAME   (reads the token from stdin)",
                             "platform token revoke " + t.token_id});
  return json_response(201, out);
}

Response get_tokens(Context& ctx, const Request&, Principal& p, const Params&) {
  // An org-restricted token sees (and revokes) only the tokens of its org.
  auto tokens = ctx.pool.read([&](pqxx::transaction_base& tx) { return list_tokens(tx, p.user_id, p.org_restriction); });
  return json_response(200, {{"tokens", tokens}, {"count", tokens.size()}, {"current_token_id", p.token_id}});
}

Response delete_token(Context& ctx, const Request& req, Principal& p, const Params& params) {
  ctx.metrics.mutations_total++;
  auto out = ctx.pool.transact([&](pqxx::work& tx) {
    return revoke_token(tx, params.at("token"), p.user_id, p.org_restriction, p.user_id, actor_metadata(req, p));
  });
  ctx.auth.forget_cached();  // this server refuses it from the next request on
  out["current"] = out["id"] == p.token_id;
  return json_response(200, out);
}

}  // namespace

void add_token_routes(std::vector<Route>& out) {
  out.push_back({"POST", "/v1/tokens", "Create an API token for yourself (the secret is answered once)", post_token, {}, {}});
  out.push_back({"GET", "/v1/tokens", "Your API tokens (never their secrets)", get_tokens, {}, {}});
  out.push_back({"DELETE", "/v1/tokens/{token}", "Revoke one of your tokens", delete_token, {}, {}});
}

}  // namespace platform::api
