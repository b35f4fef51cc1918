#pragma once
// Bearer-token authentication. Only SHA-256 hashes of token secrets are stored; a principal is cached
// briefly so long polls and bursts do not each hit the database.
#include <pqxx/pqxx>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "api/http.h"
#include "engine/db.h"
#include "engine/json.h"

namespace platform::api {

struct Principal {
  std::string user_id;
  std::string user_name;
  std::string token_id;
  std::string org_restriction;    // non-empty: this token may only act in this org
  std::string token_expires_at;   // RFC 3339; empty: the token never expires
  std::int64_t token_expires_unix = 0;  // the same as seconds since 1970; 0: never
  std::vector<std::string> orgs;  // orgs the user belongs to
};

class Authenticator {
 public:
  explicit Authenticator(db::Pool& pool, std::chrono::milliseconds ttl = std::chrono::seconds(5));
  // Throws PlatformError(unauthenticated) for a missing, malformed, unknown or revoked token.
  Principal authenticate(const Request& request);
  // True when the principal may act in the org; re-reads memberships once on a miss.
  bool can_access_org(Principal& principal, const std::string& org_id);
  // Forgets every cached principal: a token revoked here fails its next request at once (other API
  // servers notice within the cache's ttl).
  void forget_cached();

 private:
  struct Entry {
    Principal principal;
    std::chrono::steady_clock::time_point expires;
  };
  db::Pool& pool_;
  std::chrono::milliseconds ttl_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> cache_;  // by token hash
};

struct IssuedToken {
  std::string token_id;
  std::string secret;      // shown once; "plt_<hex>"
  std::string expires_at;  // RFC 3339; empty: never
};

// Creates the user when missing (appending UserCreated) and returns its id.
std::string ensure_user(pqxx::work& tx, const std::string& name);
// Issues a token for the user (appending TokenIssued, without the secret); `ttl` none: it never expires.
// `metadata` goes into the event's (who asked, the request and operation); by default the actor is
// "system".
IssuedToken issue_token(pqxx::work& tx, const std::string& user_id, const std::string& org_restriction,
                        const std::string& description, std::optional<std::chrono::seconds> ttl = std::nullopt,
                        const Json& metadata = Json::object());

}  // namespace platform::api
