// API tokens managed by their users (docs/tokens.md), against a real PostgreSQL and the real server:
// a token gives at most what the one creating it has, a revoked or expired token is refused at once
// and says so, and one user's tokens do not exist for another.
#include <gtest/gtest.h>

#include "api/tokens.h"
#include "tests/support/api_platform.h"

using namespace platform;
using harness::exec_sql;
using harness::Platform;

namespace {

// The answer's status and its JSON (problem+json for errors).
std::pair<int, Json> ask(const Platform& p, const std::string& token, const std::string& method,
                         const std::string& target, const Json& body = nullptr) {
  auto r = p.client(token).request(method, target, body.is_null() ? "" : body.dump());
  return {r.status, r.body.empty() ? Json() : Json::parse(r.body)};
}

}  // namespace

TEST(Tokens, ATokenGivesAtMostWhatItsCreatorHas) {
  Platform p;
  auto c = p.client();
  c.call("POST", "/v1/orgs", Json{{"name", "acme"}});
  c.call("POST", "/v1/orgs", Json{{"name", "globex"}});

  // An org's token, for two hours: it acts in that org only.
  auto [st, ci] = ask(p, p.token, "POST", "/v1/tokens", {{"description", "CI deploys"}, {"org", "acme"}, {"ttl", "2h"}});
  ASSERT_EQ(st, 201) << ci.dump();
  const auto ci_secret = ci["token"].get<std::string>(), ci_id = ci["id"].get<std::string>();
  EXPECT_EQ(ci["org_name"], "acme");
  ASSERT_TRUE(ci["expires_at"].is_string());
  EXPECT_EQ(ask(p, ci_secret, "GET", "/v1/orgs/acme").first, 200);
  EXPECT_EQ(ask(p, ci_secret, "GET", "/v1/orgs/globex").first, 404);

  // What it makes cannot outlive it, nor reach another org; by default it ends when its maker does.
  EXPECT_EQ(ask(p, ci_secret, "POST", "/v1/tokens", {{"description", "longer"}, {"ttl", "3h"}}).first, 400);
  EXPECT_EQ(ask(p, ci_secret, "POST", "/v1/tokens", {{"description", "wider"}, {"org", "globex"}}).first, 404);
  EXPECT_EQ(ask(p, ci_secret, "POST", "/v1/tokens", {{"description", "every org"}}).first, 412);
  auto [st2, child] = ask(p, ci_secret, "POST", "/v1/tokens", {{"description", "child"}, {"org", "acme"}});
  ASSERT_EQ(st2, 201) << child.dump();
  EXPECT_EQ(child["org_name"], "acme");
  const auto gap = exec_sql(p.conninfo, "SELECT extract(epoch FROM '" + ci["expires_at"].get<std::string>() +
                                           "'::timestamptz - '" + child["expires_at"].get<std::string>() +
                                           "'::timestamptz)")[0][0].as<double>();
  EXPECT_GE(gap, 0.0);  // never later than its maker
  EXPECT_LT(gap, 5.0);  // and not much sooner

  // It sees only its org's tokens, and cannot revoke the user's others.
  auto [st3, seen] = ask(p, ci_secret, "GET", "/v1/tokens");
  ASSERT_EQ(st3, 200);
  EXPECT_EQ(seen["current_token_id"], ci_id);
  EXPECT_EQ(seen["count"], 2);  // CI deploys and child; not the user's every-org token
  for (const auto& t : seen["tokens"]) {
    EXPECT_EQ(t["org_name"], "acme");
    EXPECT_FALSE(t.contains("token")) << "a list never shows a secret";
    // When each was last used: the one asking now, yes; the child, never.
    const bool used = t["last_used_at"].is_string();
    EXPECT_EQ(used, t["id"] == ci_id) << t.dump();
  }
  auto all = c.call("GET", "/v1/tokens");
  EXPECT_EQ(all["count"], 3);
  const auto first = all["tokens"].back()["id"].get<std::string>();  // the test's own, oldest
  EXPECT_EQ(ask(p, ci_secret, "DELETE", "/v1/tokens/" + first).first, 404);
  EXPECT_EQ(ask(p, p.token, "GET", "/v1/orgs/acme").first, 200);
}

TEST(Tokens, ARevokedOrExpiredTokenIsRefusedAtOnceAndSaysSo) {
  Platform p;
  auto c = p.client();
  c.call("POST", "/v1/orgs", Json{{"name", "acme"}});
  auto t = c.call("POST", "/v1/tokens", Json{{"description", "laptop"}, {"org", "acme"}});
  const auto secret = t["token"].get<std::string>(), id = t["id"].get<std::string>();
  EXPECT_TRUE(t["expires_at"].is_null());
  EXPECT_EQ(ask(p, secret, "GET", "/v1/orgs/acme").first, 200);  // cached by the server now

  // Another user cannot revoke it, nor tell it exists.
  EXPECT_EQ(ask(p, p.other_token, "DELETE", "/v1/tokens/" + id).first, 404);
  auto revoked = c.call("DELETE", "/v1/tokens/" + id);
  EXPECT_EQ(revoked["state"], "revoked");
  EXPECT_EQ(revoked["already_revoked"], false);
  auto [st, refused] = ask(p, secret, "GET", "/v1/orgs/acme");
  EXPECT_EQ(st, 401);
  EXPECT_NE(refused["message"].get<std::string>().find("was revoked at"), std::string::npos) << refused.dump();
  auto again = c.call("DELETE", "/v1/tokens/" + id);
  EXPECT_EQ(again["already_revoked"], true);
  EXPECT_EQ(again["revoked_at"], revoked["revoked_at"]);

  // Expired: refused, naming when.
  auto old = c.call("POST", "/v1/tokens", Json{{"description", "old"}, {"ttl", "1h"}});
  exec_sql(p.conninfo, "UPDATE core.tokens SET expires_at = now() - interval '1 minute' WHERE id = '" +
                           old["id"].get<std::string>() + "'");
  auto [st2, expired] = ask(p, old["token"].get<std::string>(), "GET", "/v1/whoami");
  EXPECT_EQ(st2, 401);
  EXPECT_NE(expired["message"].get<std::string>().find("expired at"), std::string::npos) << expired.dump();
  const auto listed = c.call("GET", "/v1/tokens");  // named: a range over a temporary's member would dangle
  for (const auto& l : listed["tokens"]) {
    if (l["id"] == old["id"]) {
      EXPECT_EQ(l["state"], "expired");
    }
  }

  // The trail: who issued and who revoked, never a secret.
  auto trail = exec_sql(p.conninfo,
                        "SELECT type, metadata->>'actor_name', data::text FROM events WHERE stream_name = 'token-" + id +
                            "' ORDER BY stream_version");
  ASSERT_EQ(trail.size(), 2u);
  EXPECT_EQ(trail[0][0].as<std::string>(), "TokenIssued");
  EXPECT_EQ(trail[1][0].as<std::string>(), "TokenRevoked");
  EXPECT_EQ(trail[1][1].as<std::string>(), "alice");
  for (const auto& r : trail) EXPECT_EQ(r[2].as<std::string>().find(secret.substr(4)), std::string::npos);
}

TEST(Tokens, BadRequestsAreRefusedWithTheirReason) {
  Platform p;
  auto c = p.client();
  c.call("POST", "/v1/orgs", Json{{"name", "acme"}});
  auto other = p.client(p.other_token);
  other.call("POST", "/v1/orgs", Json{{"name", "evil"}});
  for (const auto& [body, status] : std::vector<std::pair<Json, int>>{
           {Json::object(), 400},                                            // no description
           {{{"description", ""}}, 400},                                     // an empty one
           {{{"description", "a\nb"}}, 400},                                 // two lines
           {{{"description", std::string(201, 'x')}}, 400},                  // too long
           {{{"description", "x"}, {"ttl", "forever"}}, 400},                // not a duration
           {{{"description", "x"}, {"ttl", "10s"}}, 400},                    // too short
           {{{"description", "x"}, {"ttl", "3651d"}}, 400},                  // too long
           {{{"description", "x"}, {"scope", "all"}}, 400},                  // unknown field
           {{{"description", "x"}, {"org", "evil"}}, 404},                   // someone else's org
           {{{"description", "x"}, {"org", "nope"}}, 404}}) {                // no such org
    auto [st, answer] = ask(p, p.token, "POST", "/v1/tokens", body);
    EXPECT_EQ(st, status) << body.dump() << " -> " << answer.dump();
  }
  EXPECT_EQ(ask(p, p.token, "DELETE", "/v1/tokens/tok_nope").first, 404);
  EXPECT_EQ(ask(p, "", "GET", "/v1/tokens").first, 200);  // the test's token (client("") is alice's)
  EXPECT_EQ(p.client("plt_" + std::string(64, '0')).request("GET", "/v1/tokens").status, 401);
  EXPECT_EQ(c.call("GET", "/v1/tokens")["count"], 1);  // nothing above made a token
}

TEST(Tokens, AnOperatorRevokesAnyTokenFromTheDatabase) {
  Platform p;
  auto t = p.client().call("POST", "/v1/tokens", Json{{"description", "leaked"}});
  EXPECT_EQ(p.client(t["token"].get<std::string>()).request("GET", "/v1/whoami").status, 200);  // now cached
  db::Pool pool(p.conninfo, 1);
  auto out = pool.transact([&](pqxx::work& tx) {
    return api::revoke_token(tx, t["id"].get<std::string>(), "", "", "operator", {{"actor_name", "platformd token revoke"}});
  });
  EXPECT_EQ(out["state"], "revoked");
  // The server that authenticated it before may take up to its cache's five seconds to notice.
  int st = 0;
  for (int i = 0; i < 70 && st != 401; ++i) {
    st = p.client(t["token"].get<std::string>()).request("GET", "/v1/whoami").status;
    if (st != 401) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(st, 401);
}

// Answers to a token in its last week carry a warning naming its expiry (RFC 7234 Warning header);
// the client hands each one to its sink. A CLI of another release line is warned too; others are not.
TEST(Tokens, ATokenInItsLastWeekAndACliOfAnotherReleaseAreWarned) {
  Platform p;
  auto [st, soon] = ask(p, p.token, "POST", "/v1/tokens", {{"description", "soon"}, {"ttl", "3d"}});
  ASSERT_EQ(st, 201) << soon.dump();
  auto client = p.client(soon["token"].get<std::string>());
  std::vector<std::string> sunk;
  client.set_warning_sink([&sunk](const std::string& w) { sunk.push_back(w); });
  auto r = client.request("GET", "/v1/whoami");
  ASSERT_EQ(r.status, 200);
  ASSERT_EQ(r.warnings.size(), 1u) << r.body;
  EXPECT_EQ(r.warnings[0].rfind("token " + soon["id"].get<std::string>() + " expires in ", 0), 0u) << r.warnings[0];
  EXPECT_NE(r.warnings[0].find(" days (at " + soon["expires_at"].get<std::string>() + "): make its successor"),
            std::string::npos)
      << r.warnings[0];
  EXPECT_EQ(sunk, r.warnings);
  // Every answer to that token carries it (the CLI prints it once a run).
  EXPECT_EQ(client.request("GET", "/v1/orgs").warnings, r.warnings);

  // A token without an expiry, from a CLI of this release: nothing. From a CLI of another release: one.
  EXPECT_TRUE(p.client().request("GET", "/v1/whoami").warnings.empty());
  auto other = p.client().request("GET", "/v1/whoami", "", {{"User-Agent", "platform-cli/99.0.0 (0123456789ab)"}});
  ASSERT_EQ(other.warnings.size(), 1u);
  EXPECT_EQ(other.warnings[0].rfind("this CLI is 99.0.0 and the server ", 0), 0u) << other.warnings[0];
  // Errors carry none: the error says what to do.
  EXPECT_TRUE(client.request("GET", "/v1/orgs/nope").warnings.empty());
}
