#include "api/auth.h"

#include <spdlog/spdlog.h>

#include "engine/crypto.h"
#include "engine/event_store.h"
#include "engine/ids.h"
#include "engine/payloads.h"
#include "engine/typed_events.h"

namespace platform::api {
namespace {
std::vector<std::string> load_orgs(pqxx::transaction_base& tx, const std::string& user_id) {
  std::vector<std::string> orgs;
  for (const auto& r : tx.exec_params(
           "SELECT m.org_id FROM core.memberships m JOIN core.resources r ON r.id = m.org_id"
           " WHERE m.user_id = $1 AND r.deleted_at IS NULL",
           user_id))
    orgs.push_back(r[0].as<std::string>());
  return orgs;
}

PlatformError unauthenticated(const std::string& why) {
  return PlatformError(ErrorCode::unauthenticated, why,
                       "Log in with `platform login --token TOKEN`, or ask an operator for a token.");
}
}  // namespace

Authenticator::Authenticator(db::Pool& pool, std::chrono::milliseconds ttl) : pool_(pool), ttl_(ttl) {}

Principal Authenticator::authenticate(const Request& request) {
  auto header = request.header("authorization");
  if (header.empty()) throw unauthenticated("missing Authorization header");
  if (header.rfind("Bearer ", 0) != 0) throw unauthenticated("the Authorization header must be \"Bearer <token>\"");
  auto secret = header.substr(7);
  if (secret.rfind("plt_", 0) != 0 || secret.size() != 68) throw unauthenticated("malformed token");
  auto hash = sha256_hex(secret);
  auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    if (auto it = cache_.find(hash); it != cache_.end() && it->second.expires > now) return it->second.principal;
  }
  auto [principal, stale_use] = pool_.read([&](pqxx::transaction_base& tx) {
    auto r = tx.exec_params(
        "SELECT t.id, t.user_id, u.name, coalesce(t.org_id, ''), " + db::sql_rfc3339("t.revoked_at") + ", " +
            db::sql_rfc3339("t.expires_at") + ", t.expires_at <= now(),"
            " t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute',"
            " floor(extract(epoch FROM t.expires_at))::bigint"
            " FROM core.tokens t JOIN core.users u ON u.id = t.user_id WHERE t.secret_hash = $1",
        hash);
    if (r.empty()) throw unauthenticated("unknown token");
    // The holder of the secret may learn what became of it: that is what they need to act.
    if (!r[0][4].is_null())
      throw PlatformError(ErrorCode::unauthenticated, "token " + r[0][0].as<std::string>() + " was revoked at " +
                                                          r[0][4].as<std::string>(),
                          "Use another token (`platform login --token -`), or ask for a new one.");
    if (!r[0][6].is_null() && r[0][6].as<bool>())
      throw PlatformError(ErrorCode::unauthenticated, "token " + r[0][0].as<std::string>() + " expired at " +
                                                          r[0][5].as<std::string>(),
                          "Create a new one with `platform token create` (using a token that still works), or ask "
                          "an operator.");
    Principal p;
    p.token_id = r[0][0].as<std::string>();
    p.user_id = r[0][1].as<std::string>();
    p.user_name = r[0][2].as<std::string>();
    p.org_restriction = r[0][3].as<std::string>();
    if (!r[0][5].is_null()) {
      p.token_expires_at = r[0][5].as<std::string>();
      p.token_expires_unix = r[0][8].as<std::int64_t>();
    }
    p.orgs = load_orgs(tx, p.user_id);
    return std::pair{p, r[0][7].as<bool>()};
  });
  if (stale_use) {
    // When it was last used, to the minute (`platform token list`): one small write a minute per token.
    // A failure here must not fail the request it authenticates.
    const auto token_id = principal.token_id;
    try {
      pool_.transact_quiet([&](pqxx::work& tx) {
        tx.exec_params("UPDATE core.tokens SET last_used_at = now() WHERE id = $1", token_id);
      });
    } catch (const std::exception& e) {
      spdlog::warn("auth: could not record when token {} was last used: {}", token_id, e.what());
    }
  }
  std::lock_guard lock(mu_);
  if (cache_.size() > 10000) cache_.clear();
  cache_[hash] = Entry{principal, now + ttl_};
  return principal;
}

bool Authenticator::can_access_org(Principal& p, const std::string& org_id) {
  if (!p.org_restriction.empty() && p.org_restriction != org_id) return false;
  auto has = [&] { return std::find(p.orgs.begin(), p.orgs.end(), org_id) != p.orgs.end(); };
  if (has()) return true;
  p.orgs = pool_.read([&](pqxx::transaction_base& tx) { return load_orgs(tx, p.user_id); });
  std::lock_guard lock(mu_);
  cache_.clear();  // memberships changed somewhere: forget every cached principal
  return has();
}

void Authenticator::forget_cached() {
  std::lock_guard lock(mu_);
  cache_.clear();
}

std::string ensure_user(pqxx::work& tx, const std::string& name) {
  auto r = tx.exec_params("SELECT id FROM core.users WHERE name = $1", name);
  if (!r.empty()) return r[0][0].as<std::string>();
  auto id = new_id("usr");
  tx.exec_params("INSERT INTO core.users (id, name) VALUES ($1, $2)", id, name);
  auto e = events::encode("UserCreated", events::UserCreated{name},
                          {{"actor", "system"}, {"resource_kind", "user"}, {"resource_id", id}});
  events::append(tx, "user-" + id, -1, {e});
  return id;
}

IssuedToken issue_token(pqxx::work& tx, const std::string& user_id, const std::string& org_restriction,
                        const std::string& description, std::optional<std::chrono::seconds> ttl, const Json& metadata) {
  IssuedToken t{new_id("tok"), "plt_" + random_secret(32), ""};
  const std::optional<double> seconds = ttl ? std::optional<double>(static_cast<double>(ttl->count())) : std::nullopt;
  auto r = tx.exec_params(
      "INSERT INTO core.tokens (id, user_id, org_id, description, secret_hash, expires_at)"
      " VALUES ($1, $2, NULLIF($3, ''), $4, $5, now() + make_interval(secs => $6)) RETURNING " +
          db::sql_rfc3339("expires_at"),
      t.token_id, user_id, org_restriction, description, sha256_hex(t.secret), seconds);
  if (!r[0][0].is_null()) t.expires_at = r[0][0].as<std::string>();
  // The description names the token where a trail shows it (`platform events`: "token CI deploys").
  Json meta = {{"actor", "system"}, {"resource_kind", "token"}, {"resource_id", t.token_id},
               {"resource_name", description}};
  if (!org_restriction.empty()) meta["org_id"] = org_restriction;
  meta.update(metadata);
  auto e = events::encode("TokenIssued", events::TokenIssued{user_id, org_restriction, description, t.expires_at}, meta);
  events::append(tx, "token-" + t.token_id, -1, {e});
  return t;
}

}  // namespace platform::api
