// The REST API against a real PostgreSQL: bad input, auth and org isolation, idempotency, stale versions,
// long-poll wake-up and 1,000 concurrent watches on a fixed set of database connections.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <set>
#include <thread>

#include "api/auth.h"
#include "api/client.h"
#include "api/openapi.h"
#include "api/resources.h"
#include "api/routes.h"
#include "api/server.h"
#include "engine/db.h"
#include "engine/ids.h"
#include "engine/listener.h"
#include "engine/crypto.h"
#include "engine/migrate.h"
#include "engine/version.h"
#include "engine/secrets/secrets.h"
#include "projections/runner.h"
#include "tests/support/api_platform.h"
#include "tests/support/pg.h"

#include <boost/asio/io_context.hpp>

using namespace platform;
using harness::Platform;
using harness::create_envs;

namespace {

int raw_socket(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string read_all(int fd, std::chrono::milliseconds timeout) {
  std::string out;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.find("\r\n\r\n") != std::string::npos && out.find("}") != std::string::npos) break;
  }
  return out;
}

// A shell command's standard output.
std::string run_capture(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  ::pclose(f);
  return out;
}

int status_of(const std::string& raw) { return raw.size() > 12 ? std::stoi(raw.substr(9, 3)) : 0; }

}  // namespace

TEST(Api, OpenApiDocumentMatchesTheRoutes) {
  auto doc = Json::parse(api::openapi_document());
  std::set<std::string> documented, served;
  for (auto& [path, item] : doc["paths"].items())
    for (auto& [method, op] : item.items()) {
      std::string m = method;
      for (auto& ch : m) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      documented.insert(m + " " + path);
    }
  for (const auto& r : api::routes()) served.insert(r.method + " " + r.pattern);
  EXPECT_EQ(documented, served);
}

// GET /v1/version answers without a token: the build that serves and where the database's schema
// stands against it, down to migrations a newer platformd applied; /metrics carries the build too.
TEST(Api, VersionNamesTheBuildAndTheSchemaWithoutAToken) {
  Platform p;
  auto anonymous = api::Client(p.url, "");
  auto v = Json::parse(anonymous.request("GET", "/v1/version").body);
  EXPECT_EQ(v["version"], build_info().version);
  EXPECT_EQ(v["commit"], build_info().commit);
  EXPECT_EQ(v["api"], "v1");
  ASSERT_TRUE(v["schema"].is_object()) << v.dump();
  EXPECT_FALSE(v["schema"]["binary"].get<std::string>().empty());
  EXPECT_EQ(v["schema"]["database"], v["schema"]["binary"]);
  EXPECT_EQ(v["schema"]["pending"], Json::array());
  EXPECT_EQ(v["schema"]["unknown"], Json::array());
  // A bad token changes nothing: the answer is about the server, not the caller.
  EXPECT_EQ(api::Client(p.url, "plt_nope").request("GET", "/v1/version").status, 200);

  // A newer platformd migrated the database: the answer names its migration, and so does migrate().
  db::Pool pool(p.conninfo, 1);
  pool.transact([](pqxx::work& tx) {
    tx.exec("INSERT INTO schema_migrations (name, checksum) VALUES ('9999_from_a_newer_platformd.sql', 'x')");
  });
  v = Json::parse(anonymous.request("GET", "/v1/version").body);
  EXPECT_EQ(v["schema"]["database"], "9999_from_a_newer_platformd.sql");
  EXPECT_EQ(v["schema"]["unknown"], Json::array({"9999_from_a_newer_platformd.sql"}));
  EXPECT_EQ(v["schema"]["pending"], Json::array());
  auto again = db::migrate(p.conninfo);
  EXPECT_TRUE(again.applied.empty());
  EXPECT_EQ(again.unknown, std::vector<std::string>{"9999_from_a_newer_platformd.sql"});

  const auto metrics = anonymous.request("GET", "/metrics").body;
  EXPECT_NE(metrics.find("platform_build_info{version=\"" + build_info().version + "\",commit=\"" +
                         build_info().commit + "\"} 1"),
            std::string::npos)
      << metrics;
}

TEST(Api, BadInputGetsItsStatusAndTheServerKeepsServing) {
  Platform p;
  auto c = p.client();
  auto check = [&](const std::string& method, const std::string& target, const std::string& body, int status,
                   const std::string& code, const std::map<std::string, std::string>& headers = {}) {
    auto r = c.request(method, target, body, headers);
    EXPECT_EQ(r.status, status) << method << " " << target << " " << body << " -> " << r.body;
    EXPECT_EQ(r.content_type, "application/problem+json") << r.body;
    auto j = Json::parse(r.body);
    EXPECT_EQ(j["code"], code) << r.body;
    EXPECT_FALSE(j["request_id"].get<std::string>().empty());
    EXPECT_TRUE(p.healthy());
  };
  ASSERT_EQ(c.request("POST", "/v1/orgs", R"({"name":"acme"})").status, 201);
  check("POST", "/v1/orgs", "{not json", 400, "invalid_request");
  check("POST", "/v1/orgs", R"({"name": 42})", 400, "invalid_request");
  check("POST", "/v1/orgs", R"(["name"])", 400, "invalid_request");
  check("POST", "/v1/orgs", R"({"name":"x","colour":"red"})", 400, "invalid_request");
  // An exec's command is checked before anything else is looked up or recorded.
  const std::string exec = "/v1/orgs/acme/projects/nope/apps/a/envs/e/instances/web-1/exec";
  check("POST", exec, R"({"command": []})", 400, "invalid_request");
  check("POST", exec, R"({"command": ["/bin/sh", "-c", "a\nb"]})", 400, "invalid_request");
  check("POST", exec, R"({"command": [""]})", 400, "invalid_request");
  check("POST", exec, R"({"command": ["ls"], "timeout": "1h"})", 400, "invalid_request");
  check("POST", exec, R"({"command": ["ls"], "env": {"1A": "x"}})", 400, "invalid_request");
  check("POST", exec, R"({"command": ["ls"], "stdin": "x"})", 400, "invalid_request");
  check("POST", exec, R"({"command": ["ls"]})", 404, "not_found");  // well formed: then the path is looked up
  // A session's too, and its size; then the path; a session nobody has is 404 on every verb.
  const std::string sessions = "/v1/orgs/acme/projects/nope/apps/a/envs/e/instances/web-1/sessions";
  check("POST", sessions, R"({"command": []})", 400, "invalid_request");
  check("POST", sessions, R"({"command": ["sh"], "rows": 0})", 400, "invalid_request");
  check("POST", sessions, R"({"command": ["sh"], "tty": "yes"})", 400, "invalid_request");
  check("POST", sessions, R"({"command": ["sh"], "tty": true, "rows": 40, "cols": 120})", 404, "not_found");
  check("POST", "/v1/sessions/ses_x/input", R"({"seq": 1, "data": "aGkK"})", 404, "not_found");
  check("GET", "/v1/sessions/ses_x/output?wait=1s", "", 404, "not_found");
  check("DELETE", "/v1/sessions/ses_x", "", 404, "not_found");
  check("GET", "/v1/agent/sessions/ses_x/input?wait=1s", "", 401, "unauthenticated");
  check("POST", "/v1/agent/sessions/ses_x/output", R"({"seq": 1})", 401, "unauthenticated");
  check("GET", "/v1/agent/exec?wait=1s", "", 401, "unauthenticated");
  check("POST", "/v1/agent/exec/exec_x", R"({"exit_code": 0})", 401, "unauthenticated");
  {  // a name one easy step from a valid one: the hint offers the valid one
    auto r = c.request("POST", "/v1/orgs", R"({"name":"My_Org"})");
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(Json::parse(r.body)["hint"].get<std::string>().find("Did you mean \"my-org\"?"), std::string::npos) << r.body;
  }
  check("POST", "/v1/orgs", R"({"name":"Bad Name"})", 400, "invalid_request");
  // A key twice is refused (parsers disagree on which counts), also inside a nested object.
  check("POST", "/v1/orgs", R"({"name":"dup-a","name":"dup-b"})", 400, "invalid_request");
  check("POST", "/v1/orgs", R"({"name":"dup-c","labels":{"a":"1","a":"2"}})", 400, "invalid_request");
  EXPECT_NE(c.request("POST", "/v1/orgs", R"({"name":"dup-a","name":"dup-b"})").body.find("appears twice in one object"),
            std::string::npos);
  check("POST", "/v1/orgs", R"({"name":"acme"})", 409, "name_taken");
  check("POST", "/v1/orgs", R"({"name": 1e999})", 400, "invalid_request");  // found by tests/fuzz
  check("POST", "/v1/orgs", std::string(500000, '['), 400, "invalid_request");
  check("POST", "/v1/orgs", std::string(2 << 20, 'x'), 413, "payload_too_large");
  check("GET", "/v1/orgs", "", 431, "headers_too_large", {{"X-Big", std::string(20000, 'a')}});
  check("GET", "/v1/nothing-here", "", 404, "not_found");
  check("PUT", "/v1/orgs", "", 405, "method_not_allowed");
  check("GET", "/v1/orgs/acme/events?after=garbage", "", 400, "invalid_request");
  check("GET", "/v1/orgs/acme/events?bogus=1", "", 400, "invalid_request");
  check("GET", "/v1/orgs/acme/projects/none", "", 404, "not_found");

  // Authentication: missing, malformed, unknown.
  for (const std::string& t : {std::string("plt_") + std::string(64, '0'), std::string("nonsense")}) {
    auto r = api::Client(p.url, t).request("GET", "/v1/orgs");
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(Json::parse(r.body)["code"], "unauthenticated");
  }
  EXPECT_EQ(api::Client(p.url, "").request("GET", "/v1/orgs").status, 401);

  // Another org's resources are "not found", by name and by ID: never "forbidden".
  auto created = Json::parse(c.request("POST", "/v1/orgs/acme/projects", R"({"name":"secret"})").body);
  auto other = p.client(p.other_token);
  EXPECT_EQ(other.request("GET", "/v1/orgs/acme").status, 404);
  EXPECT_EQ(other.request("GET", "/v1/orgs/acme/projects/secret").status, 404);
  EXPECT_EQ(other.request("GET", "/v1/resources/" + created["resource"]["id"].get<std::string>()).status, 404);
  EXPECT_EQ(other.request("DELETE", "/v1/orgs/acme").status, 404);
  EXPECT_EQ(other.request("GET", "/v1/orgs/acme/events").status, 404);
  EXPECT_EQ(other.request("GET", "/v1/operations/" + created["operation_id"].get<std::string>()).status, 404);

  // A slow client (headers never finished) is cut off; the next client is served.
  int fd = raw_socket(p.server->port());
  ASSERT_GE(fd, 0);
  std::string partial = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
  ASSERT_GT(::send(fd, partial.data(), partial.size(), 0), 0);
  auto raw = read_all(fd, std::chrono::seconds(5));
  ::close(fd);
  EXPECT_TRUE(raw.empty() || status_of(raw) == 408) << raw;
  EXPECT_TRUE(p.healthy());

  // A kept-alive connection that sends no next request is closed after the request timeout without a
  // word: a 408 there would be read by the client as the answer to its next request.
  fd = raw_socket(p.server->port());
  ASSERT_GE(fd, 0);
  const std::string healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_GT(::send(fd, healthz.data(), healthz.size(), 0), 0);
  EXPECT_EQ(status_of(read_all(fd, std::chrono::seconds(5))), 200);
  {
    std::string after;
    bool closed = false;
    char buf[512];
    for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
         !closed && std::chrono::steady_clock::now() < until;) {
      pollfd pf{fd, POLLIN, 0};
      if (::poll(&pf, 1, 50) <= 0) continue;
      auto n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) closed = true;
      else after.append(buf, static_cast<std::size_t>(n));
    }
    EXPECT_TRUE(closed) << "an idle kept-alive connection stays open past the request timeout";
    EXPECT_EQ(after, "");
  }
  ::close(fd);

  // Garbage on the wire gets 400 and the server keeps serving.
  fd = raw_socket(p.server->port());
  std::string junk = "\x16\x03\x01 not http at all\r\n\r\n";
  ::send(fd, junk.data(), junk.size(), 0);
  raw = read_all(fd, std::chrono::seconds(2));
  ::close(fd);
  EXPECT_EQ(status_of(raw), 400) << raw;
  EXPECT_TRUE(p.healthy());
}

TEST(Api, IdempotencyKeyReplaysTheFirstReceipt) {
  Platform p;
  auto c = p.client();
  auto a = c.call("POST", "/v1/orgs", Json{{"name", "idem"}}, "key-1");
  auto b = c.call("POST", "/v1/orgs", Json{{"name", "idem"}}, "key-1");
  EXPECT_EQ(a["operation_id"], b["operation_id"]);
  EXPECT_EQ(a["resource"]["id"], b["resource"]["id"]);
  ASSERT_EQ(a["events"].size(), 1u);
  EXPECT_EQ(a["events"][0]["type"], "OrgCreated");  // a receipt names what it appended
  EXPECT_EQ(b["events"], a["events"]);
  try {
    c.call("POST", "/v1/orgs", Json{{"name", "other"}}, "key-1");
    FAIL() << "reusing a key for another request must fail";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.error().code, ErrorCode::idempotency_conflict);
  }
  // Concurrent retries with one key create one org.
  std::vector<std::thread> ts;
  std::vector<std::string> ids(6);
  for (int i = 0; i < 6; ++i)
    ts.emplace_back([&, i] { ids[i] = c.call("POST", "/v1/orgs", Json{{"name", "race"}}, "key-2")["resource"]["id"]; });
  for (auto& t : ts) t.join();
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 1u);
}

TEST(Api, StaleIfMatchIs409) {
  Platform p;
  auto c = p.client();
  c.call("POST", "/v1/orgs", Json{{"name", "ver"}});
  auto r = c.request("DELETE", "/v1/orgs/ver", "", {{"If-Match", "7"}});
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(Json::parse(r.body)["code"], "version_conflict");
  EXPECT_EQ(c.request("DELETE", "/v1/orgs/ver", "", {{"If-Match", "0"}}).status, 200);
  EXPECT_EQ(c.call("GET", "/v1/orgs?deleted=true")["count"], 1);
}

// A resource with live children is not deleted (412): the message names them, the hint gives the exact
// delete command for one child and the exact list command for several. Deleting them first works.
TEST(Api, ADeleteWithLiveChildrenNamesThemAndTheWayOut) {
  Platform p;
  auto c = p.client();
  c.call("POST", "/v1/orgs", Json{{"name", "kin"}});
  c.call("POST", "/v1/orgs/kin/projects", Json{{"name", "shop"}});
  c.call("POST", "/v1/orgs/kin/projects/shop/apps", Json{{"name", "api"}});
  auto one = c.request("DELETE", "/v1/orgs/kin/projects/shop");
  EXPECT_EQ(one.status, 412) << one.body;
  auto why = Json::parse(one.body);
  EXPECT_EQ(why["message"], "project shop still has 1 app: api");
  EXPECT_EQ(why["hint"], "Delete it first: platform app delete api --project shop");
  for (const char* env : {"prod", "dev"}) c.call("POST", "/v1/orgs/kin/projects/shop/apps/api/envs", Json{{"name", env}});
  why = Json::parse(c.request("DELETE", "/v1/orgs/kin/projects/shop/apps/api").body);
  EXPECT_EQ(why["message"], "app api still has 2 envs: dev, prod");
  EXPECT_EQ(why["hint"], "Delete them first (platform env list --project shop --app api lists them), then this app.");
  for (const char* path : {"/apps/api/envs/dev", "/apps/api/envs/prod", "/apps/api", ""})
    EXPECT_EQ(c.request("DELETE", std::string("/v1/orgs/kin/projects/shop") + path).status, 200) << path;
}

TEST(Api, LongPollWakesWithinTheSameSecondAsTheAppend) {
  Platform p;
  auto c = p.client();
  c.call("POST", "/v1/orgs", Json{{"name", "w"}});
  std::chrono::steady_clock::time_point appended, woke;
  Json page;
  std::thread watcher([&] {
    page = c.call("GET", "/v1/orgs/w/events?after=now&wait=20s");
    woke = std::chrono::steady_clock::now();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  c.call("POST", "/v1/orgs/w/projects", Json{{"name", "ping"}});
  appended = std::chrono::steady_clock::now();
  watcher.join();
  ASSERT_EQ(page["count"], 1) << page.dump();
  EXPECT_EQ(page["events"][0]["type"], "ProjectCreated");
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(woke - appended).count(), 1000);
}

TEST(Api, ThousandWaitingWatchesHoldNoExtraDatabaseConnections) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  ASSERT_GE(rl.rlim_cur, 2200u) << "needs file descriptors for 1,000 client and 1,000 server sockets";
  Platform p;
  auto c = p.client();
  c.call("POST", "/v1/orgs", Json{{"name", "many"}});
  // Warm the token cache and open the API's fixed-size pool to its ceiling: the claim under test is that
  // 1,000 waiting watches add nothing to it.
  std::vector<std::thread> warm;
  for (int i = 0; i < 24; ++i) warm.emplace_back([&] { c.call("GET", "/v1/orgs/many/events?after=now"); });
  for (auto& t : warm) t.join();
  const int before = p.db_connections();
  const std::string req = "GET /v1/orgs/many/events?after=now&wait=30s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                          p.token + "\r\n\r\n";
  std::vector<int> fds;
  for (int i = 0; i < 1000; ++i) {
    int fd = raw_socket(p.server->port());
    ASSERT_GE(fd, 0) << "connect " << i;
    ASSERT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
    fds.push_back(fd);
  }
  // Wait until every watch is parked in the hub.
  int waiting = 0;
  for (int i = 0; i < 200 && waiting < 1000; ++i) {
    auto m = c.request("GET", "/metrics").body;
    auto pos = m.find("\nplatform_watch_waiters ");
    waiting = pos == std::string::npos ? 0 : std::stoi(m.substr(pos + 24));
    if (waiting < 1000) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(waiting, 1000);
  const int during = p.db_connections();
  EXPECT_LE(during, before) << "watches must not hold database connections";
  c.call("POST", "/v1/orgs/many/projects", Json{{"name", "wake"}});
  int woke = 0;
  for (int fd : fds) {
    auto raw = read_all(fd, std::chrono::seconds(10));
    if (status_of(raw) == 200 && raw.find("ProjectCreated") != std::string::npos) ++woke;
    ::close(fd);
  }
  EXPECT_EQ(woke, 1000);
}

// An env's config: versions, no-op changes, validation, concurrent writers, another org's env, and
// the version's whole content in one event.
// A name that is not found gets the closest name under the same parent and the list command with the
// parents' flags; never a name from another org.
TEST(Api, NotFoundSuggestsTheClosestNameAndTheExactListCommand) {
  Platform p;
  auto c = p.client();
  create_envs(c, {"prod"});
  ASSERT_EQ(c.request("POST", "/v1/orgs", R"({"name":"acmf"})").status, 201);  // the caller's too, but another org
  auto hint = [&](const std::string& target) {
    auto r = c.request("GET", target);
    EXPECT_EQ(r.status, 404) << r.body;
    return Json::parse(r.body).value("hint", "");
  };
  EXPECT_EQ(hint("/v1/orgs/acme/projects/shpo"), "Did you mean \"shop\"? List what exists with `platform project list`.");
  EXPECT_EQ(hint("/v1/orgs/acme/projects/shop/apps/api/envs/prdo"),
            "Did you mean \"prod\"? List what exists with `platform env list --project shop --app api`.");
  EXPECT_EQ(hint("/v1/orgs/acme/projects/shop/apps/api/envs/staging"),
            "List what exists with `platform env list --project shop --app api`.");
  EXPECT_EQ(hint("/v1/orgs/acme/projects/shop/apps/apx/envs/prod").find("Did you mean \"api\"?"), 0u);
  EXPECT_EQ(hint("/v1/orgs/acmx").find("Did you mean"), std::string::npos);
}

TEST(Api, ConfigIsVersionedPerEnv) {
  Platform p;
  auto c = p.client();
  create_envs(c, {"prod"});
  const std::string base = "/v1/orgs/acme/projects/shop/apps/api/envs/prod/config";

  EXPECT_EQ(c.call("GET", base)["version"], 0);
  auto r1 = c.call("PATCH", base, Json{{"set", {{"LOG_LEVEL", "debug"}, {"MULTI", "a\nb=\"c\""}}}});
  EXPECT_EQ(r1["config_version"], 1);
  EXPECT_EQ(r1["status"], "succeeded");
  EXPECT_EQ(r1["note"], "config v1 is stored; the env's first deploy delivers it (platform deploy --image IMAGE "
                        "--project shop --app api --env prod)");
  EXPECT_EQ(r1["diff"].size(), 2u);
  auto same = c.call("PATCH", base, Json{{"set", {{"LOG_LEVEL", "debug"}}}, {"unset", {"NEVER_SET"}}});
  EXPECT_TRUE(same["duplicate"].get<bool>());  // nothing changed: no new version
  EXPECT_EQ(same["config_version"], 1);
  EXPECT_EQ(same["status"], "succeeded");
  auto r2 = c.call("PATCH", base, Json{{"set", {{"LOG_LEVEL", "info"}}}, {"unset", {"MULTI"}}});
  EXPECT_EQ(r2["config_version"], 2);
  auto now = c.call("GET", base);
  EXPECT_EQ(now["version"], 2);
  EXPECT_EQ(now["values"], (Json{{"LOG_LEVEL", {{"value", "info"}, {"version", 2}, {"set_by", now["values"]["LOG_LEVEL"]["set_by"]},
                                                {"set_at", now["values"]["LOG_LEVEL"]["set_at"]}}}}));

  // Eight writers at once: every change lands in its own version, none is lost.
  std::vector<std::thread> ts;
  for (int i = 0; i < 8; ++i)
    ts.emplace_back([&, i] { c.call("PATCH", base, Json{{"set", {{"K" + std::to_string(i), "v"}}}}); });
  for (auto& t : ts) t.join();
  now = c.call("GET", base);
  EXPECT_EQ(now["version"], 10);
  EXPECT_EQ(now["values"].size(), 9u);

  // Version 1 is still there, whole, in the event log.
  pqxx::connection db(p.conninfo);
  pqxx::work tx(db);
  auto v1 = Json::parse(tx.exec("SELECT data::text FROM events WHERE type = 'ConfigVersionCreated' AND stream_version = 0")[0][0]
                            .as<std::string>());
  EXPECT_EQ(v1["values"]["MULTI"]["value"], "a\nb=\"c\"");

  EXPECT_EQ(p.status("PATCH", base, Json{{"set", {{"1BAD", "x"}}}}), 400);
  EXPECT_EQ(p.status("PATCH", base, Json{{"set", {{"PLATFORM_X", "x"}}}}), 400);
  EXPECT_EQ(p.status("PATCH", base, Json{{"set", {{"A", 1}}}}), 400);
  EXPECT_EQ(p.status("PATCH", base, Json{{"set", {{"A", "x"}}}, {"unset", {"A"}}}), 400);
  EXPECT_EQ(p.status("PATCH", base, Json::object()), 400);
  EXPECT_EQ(p.status("PATCH", base, Json{{"set", {{"A", std::string(40000, 'x')}}}}), 400);
  EXPECT_EQ(p.status("PATCH", base, Json{{"sett", Json::object()}}), 400);
  EXPECT_EQ(p.status("PATCH", "/v1/orgs/acme/projects/shop/apps/api/envs/nope/config", Json{{"set", {{"A", "x"}}}}), 404);
  EXPECT_EQ(p.status("GET", base, Json(), p.other_token), 404);  // another org's env: not found, never forbidden
  EXPECT_EQ(p.status("PATCH", base, Json{{"set", {{"A", "x"}}}}, p.other_token), 404);
}

// Secrets: sealed before they reach the database, never in an answer, the log or a dump; versions and
// no-op changes like config; a tampered or moved ciphertext does not open.
TEST(Api, SecretsAreSealedAndNeverShown) {
  Platform p;
  auto c = p.client();
  create_envs(c, {"prod", "dev"});
  const std::string base = "/v1/orgs/acme/projects/shop/apps/api/envs/prod/secrets";
  const std::string v1 = "correct-horse-battery-staple-4711", v2 = "line1\n\"quoted\"=x \xe2\x9c\x93";

  std::vector<std::string> answers;
  auto r1 = c.call("PATCH", base, Json{{"set", {{"DB_PASSWORD", base64_encode(v1)}, {"CERT", base64_encode(v2)}}}}, "k-1");
  answers.push_back(r1.dump());
  EXPECT_EQ(r1["secrets_version"], 1);
  auto replay = c.call("PATCH", base, Json{{"set", {{"DB_PASSWORD", base64_encode(v1)}, {"CERT", base64_encode(v2)}}}}, "k-1");
  EXPECT_EQ(replay["operation_id"], r1["operation_id"]);  // Idempotency-Key replays work with the keyed fingerprint
  auto same = c.call("PATCH", base, Json{{"set", {{"DB_PASSWORD", base64_encode(v1)}}}});
  answers.push_back(same.dump());
  EXPECT_TRUE(same["duplicate"].get<bool>());
  auto listed = c.call("GET", base);
  answers.push_back(listed.dump());
  EXPECT_EQ(listed["version"], 1);
  ASSERT_EQ(listed["secrets"].size(), 2u);
  EXPECT_EQ(listed["secrets"][1]["name"], "DB_PASSWORD");
  EXPECT_EQ(listed["secrets"][1]["bytes"], v1.size());
  EXPECT_EQ(listed["secrets"][1]["digest"].get<std::string>().rfind("hmac-sha256:", 0), 0u);
  EXPECT_FALSE(listed["secrets"][1].contains("ciphertext"));
  auto r2 = c.call("PATCH", base, Json{{"set", {{"DB_PASSWORD", base64_encode("rotated-" + v1)}}}, {"unset", {"CERT"}}});
  answers.push_back(r2.dump());
  EXPECT_EQ(r2["secrets_version"], 2);
  EXPECT_NE(c.call("GET", base)["secrets"][0]["digest"], listed["secrets"][1]["digest"]);
  const auto events = c.call("GET", "/v1/orgs/acme/events");
  answers.push_back(events.dump());
  // The events API shows each version's values as `secrets list` does: no nonce, no ciphertext.
  int versions = 0;
  for (const auto& e : events["events"])
    if (e["type"] == "SecretsVersionCreated") {
      ++versions;
      for (const auto& [name, v] : e["data"]["values"].items()) {
        EXPECT_FALSE(v.contains("ciphertext")) << name;
        EXPECT_FALSE(v.contains("nonce")) << name;
        EXPECT_TRUE(v.contains("digest")) << name;
      }
    }
  EXPECT_EQ(versions, 2);

  // Stored sealed: opening needs the key and the right env and name.
  pqxx::connection db(p.conninfo);
  pqxx::work tx(db);
  auto data = Json::parse(tx.exec("SELECT data::text FROM events WHERE type = 'SecretsVersionCreated' AND stream_version = 0")[0][0]
                              .as<std::string>());
  const auto& sealed = data["values"]["DB_PASSWORD"];
  secrets::Sealed s{sealed["key_id"], sealed["nonce"], sealed["ciphertext"]};
  auto key = secrets::load_key_file(p.key_file);
  auto env_id = data["env_id"].get<std::string>();
  EXPECT_EQ(secrets::open({key}, s, env_id + "/DB_PASSWORD"), v1);
  EXPECT_THROW(secrets::open({key}, s, env_id + "/CERT"), PlatformError);
  tx.abort();

  // No plaintext anywhere: not in any answer, not in a full dump of the database (its base64 neither).
  auto dump = run_capture("pg_dump --data-only '" + p.conninfo + "'");
  ASSERT_GT(dump.size(), 1000u);
  for (const auto& secret : {v1, v2, std::string("rotated-") + v1}) {
    for (const auto& a : answers) EXPECT_EQ(a.find(secret), std::string::npos) << a;
    EXPECT_EQ(dump.find(secret), std::string::npos);
    EXPECT_EQ(dump.find(base64_encode(secret)), std::string::npos);
  }

  EXPECT_EQ(p.status("PATCH", base, Json{{"set", {{"A", "not base64!"}}}}), 400);
  EXPECT_EQ(p.status("PATCH", base, Json{{"set", {{"PLATFORM_TOKEN", base64_encode("x")}}}}), 400);
  EXPECT_EQ(p.status("PATCH", base, Json{{"set", {{"A", base64_encode(std::string(70000, 'x'))}}}}), 400);
  EXPECT_EQ(p.status("GET", base, Json(), p.other_token), 404);
  EXPECT_EQ(c.call("GET", "/v1/orgs/acme/projects/shop/apps/api/envs/dev/secrets")["version"], 0);  // per env
}
