#include "api/auth.h"

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
  auto principal = pool_.read([&](pqxx::transaction_base& tx) {
    auto r = tx.exec_params(
        "SELECT t.id, t.user_id, u.name, coalesce(t.org_id, '') FROM core.tokens t JOIN core.users u ON u.id = t.user_id"
        " WHERE t.secret_hash = $1 AND t.revoked_at IS NULL",
        hash);
    if (r.empty()) throw unauthenticated("unknown or revoked token");
    Principal p;
    p.token_id = r[0][0].as<std::string>();
    p.user_id = r[0][1].as<std::string>();
    p.user_name = r[0][2].as<std::string>();
    p.org_restriction = r[0][3].as<std::string>();
    p.orgs = load_orgs(tx, p.user_id);
    return p;
  });
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
                        const std::string& description) {
  IssuedToken t{new_id("tok"), "plt_" + random_secret(32)};
  tx.exec_params(
      "INSERT INTO core.tokens (id, user_id, org_id, description, secret_hash) VALUES ($1, $2, NULLIF($3, ''), $4, $5)",
      t.token_id, user_id, org_restriction, description, sha256_hex(t.secret));
  Json meta = {{"actor", "system"}, {"resource_kind", "token"}, {"resource_id", t.token_id}};
  if (!org_restriction.empty()) meta["org_id"] = org_restriction;
  auto e = events::encode("TokenIssued", events::TokenIssued{user_id, org_restriction, description}, meta);
  events::append(tx, "token-" + t.token_id, -1, {e});
  return t;
}

}  // namespace platform::api
