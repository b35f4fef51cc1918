// Hosts through the REST API and the real platform-agent binary, against a real PostgreSQL: operators
// only, single-use expiring join tokens, host credentials, heartbeats, and liveness (down with a reason,
// back up), and an agent that restarts without a token.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "api/hosts.h"
#include "engine/version.h"
#include "reconcilers/host_liveness.h"
#include "tests/support/api_platform.h"
#include "tests/support/process.h"

using namespace platform;
namespace fs = std::filesystem;

namespace {

const Json kReport = {{"capacity", {{"cpus", 4}, {"memory_mib", 8192}, {"disk_mib", 100000}}},
                      {"runtime", {{"name", "none"}, {"reason", "test"}}}};

class HostsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    platform_ = new harness::Platform();
    pqxx::connection c(platform_->conninfo);
    pqxx::work tx(c);
    api::make_operator(tx, tx.exec("SELECT id FROM core.users WHERE name = 'alice'")[0][0].as<std::string>());
    tx.commit();
  }
  static void TearDownTestSuite() { delete platform_; }

  std::string join_token(const std::string& ttl = "1h") const {
    return platform_->client().call("POST", "/v1/hosts/join-tokens", Json{{"ttl", ttl}}, std::string())["token"];
  }
  api::ClientResponse enrol(const std::string& token, const std::string& name, const Json& report = kReport) const {
    return api::Client(platform_->url, "").request(
        "POST", "/v1/hosts/enrol", Json{{"join_token", token}, {"name", name}, {"report", report}}.dump());
  }
  api::ClientResponse beat(const std::string& credential) const {
    return api::Client(platform_->url, credential).request("POST", "/v1/hosts/heartbeat", Json{{"report", kReport}}.dump());
  }
  Json host(const std::string& name) const { return platform_->client().call("GET", "/v1/hosts/" + name); }
  static std::string code(const api::ClientResponse& r) { return Json::parse(r.body).value("code", ""); }

  static inline harness::Platform* platform_ = nullptr;
};

TEST_F(HostsTest, HostsAreForPlatformOperatorsOnly) {
  const auto mallory = platform_->other_token;
  EXPECT_EQ(platform_->status("POST", "/v1/hosts/join-tokens", Json::object(), mallory), 404);
  EXPECT_EQ(platform_->status("GET", "/v1/hosts", Json(), mallory), 404);
  EXPECT_EQ(api::Client(platform_->url, "").request("GET", "/v1/hosts").status, 401);
  auto issued = platform_->client().call("POST", "/v1/hosts/join-tokens", Json::object(), std::string());
  EXPECT_EQ(issued["token"].get<std::string>().rfind("pjt_", 0), 0u);
  EXPECT_TRUE(issued["single_use"].get<bool>());
  // Only the hash is stored, and the event does not carry the secret.
  pqxx::connection c(platform_->conninfo);
  pqxx::work tx(c);
  EXPECT_EQ(tx.exec_params("SELECT count(*) FROM events WHERE data::text LIKE '%' || $1 || '%'",
                           issued["token"].get<std::string>())[0][0].as<int>(), 0);
  EXPECT_EQ(platform_->status("POST", "/v1/hosts/join-tokens", Json{{"ttl", "1s"}}), 400);
}

TEST_F(HostsTest, AJoinTokenEnrolsOneHostOnceAndExpires) {
  const auto token = join_token();
  auto first = enrol(token, "h-once");
  ASSERT_EQ(first.status, 201) << first.body;
  auto id = Json::parse(first.body);
  EXPECT_EQ(id["credential"].get<std::string>().rfind("phc_", 0), 0u);
  auto again = enrol(token, "h-twice");
  EXPECT_EQ(again.status, 401);
  EXPECT_NE(again.body.find("already used"), std::string::npos);
  EXPECT_EQ(enrol("pjt_" + std::string(64, '0'), "h-unknown").status, 401);
  EXPECT_EQ(enrol("not-a-token", "h-bad").status, 401);
  EXPECT_EQ(enrol(join_token(), "Bad Name").status, 400);
  EXPECT_EQ(enrol(join_token(), "h-report", Json{{"capacity", "lots"}}).status, 400);
  auto taken = enrol(join_token(), "h-once");
  EXPECT_EQ(taken.status, 409);
  EXPECT_EQ(code(taken), "name_taken");
  const auto expiring = join_token("10s");
  {
    pqxx::connection c(platform_->conninfo);
    pqxx::work tx(c);
    tx.exec("UPDATE core.host_join_tokens SET expires_at = now() - interval '1 second' WHERE used_by IS NULL");
    tx.commit();
  }
  auto expired = enrol(expiring, "h-late");
  EXPECT_EQ(expired.status, 401);
  EXPECT_NE(expired.body.find("expired"), std::string::npos);
  auto h = host("h-once");
  EXPECT_EQ(h["state"], "up");
  EXPECT_EQ(h["capacity"]["memory_mib"], 8192);
  EXPECT_EQ(h["events"][0]["type"], "HostEnrolled");
}

TEST_F(HostsTest, SilentHostsGoDownWithTheReasonAndComeBackOnTheirNextHeartbeat) {
  auto cred = Json::parse(enrol(join_token(), "h-live").body)["credential"].get<std::string>();
  EXPECT_EQ(beat(cred).status, 200);
  EXPECT_EQ(beat(platform_->token).status, 401);  // a user token is not a host credential
  EXPECT_EQ(beat("phc_" + std::string(64, 'a')).status, 401);
  pqxx::connection c(platform_->conninfo);
  {
    pqxx::work tx(c);
    tx.exec("UPDATE core.host_liveness l SET last_seen = now() - interval '1 minute' FROM core.hosts h"
            " WHERE h.id = l.host_id AND h.name = 'h-live'");
    auto down = api::mark_silent_hosts_down(tx, std::chrono::seconds(30));
    ASSERT_EQ(down.size(), 1u);
    EXPECT_TRUE(api::mark_silent_hosts_down(tx, std::chrono::seconds(30)).empty());  // once
    tx.commit();
  }
  auto h = host("h-live");
  EXPECT_EQ(h["state"], "down");
  EXPECT_EQ(h["events"][0]["type"], "HostDown");
  EXPECT_NE(h["events"][0]["data"]["reason"].get<std::string>().find("grace period is 30.0 s"), std::string::npos);
  auto back = beat(cred);
  EXPECT_EQ(Json::parse(back.body)["previous_state"], "down");
  h = host("h-live");
  EXPECT_EQ(h["state"], "up");
  EXPECT_EQ(h["events"][0]["type"], "HostUp");
  // Free disk changes all the time: kept, but no event. More memory is an event.
  auto report = kReport;
  report["capacity"]["disk_mib"] = 99000;
  auto client = api::Client(platform_->url, cred);
  client.request("POST", "/v1/hosts/heartbeat", Json{{"report", report}}.dump());
  h = host("h-live");
  EXPECT_EQ(h["capacity"]["disk_mib"], 99000);
  EXPECT_EQ(h["events"][0]["type"], "HostUp");
  report["capacity"]["memory_mib"] = 16384;
  client.request("POST", "/v1/hosts/heartbeat", Json{{"report", report}}.dump());
  h = host("h-live");
  EXPECT_EQ(h["events"][0]["type"], "HostReportChanged");
  EXPECT_EQ(h["events"][0]["data"]["capacity"]["memory_mib"], 16384);
  EXPECT_EQ(h["events"][0]["data"]["reason"], "memory 8192 → 16384 MiB");
  // An agent of another build (an upgrade) is an event naming both builds; a malformed build is refused.
  report["agent_version"] = "0.2.0";
  report["agent_commit"] = "0123456789ab";
  EXPECT_EQ(client.request("POST", "/v1/hosts/heartbeat", Json{{"report", report}}.dump()).status, 200);
  h = host("h-live");
  EXPECT_EQ(h["agent_version"], "0.2.0");
  EXPECT_EQ(h["agent_commit"], "0123456789ab");
  EXPECT_EQ(h["events"][0]["data"]["reason"], "agent unknown → 0.2.0 (commit 0123456789ab)");
  EXPECT_EQ(h["events"][0]["data"]["agent_version"], "0.2.0");
  for (const auto& bad : std::vector<Json>{7, std::string(65, 'x'), nullptr}) {
    auto wrong = report;
    wrong["agent_version"] = bad;
    EXPECT_EQ(client.request("POST", "/v1/hosts/heartbeat", Json{{"report", wrong}}.dump()).status, 400) << bad.dump();
  }
  EXPECT_EQ(host("h-live")["events"].size(), h["events"].size());  // nothing more happened
}

TEST_F(HostsTest, TheAgentEnrolsOnceRestartsWithoutATokenAndIsMarkedDownWhenItStops) {
  const auto state = harness::PgEnvironment::get().root() / "agent-state";
  const auto log = (harness::PgEnvironment::get().root() / "agent.log").string();
  const auto token = join_token();
  auto wait_for = [&](const std::function<bool()>& ok) {
    for (int i = 0; i < 200 && !ok(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return ok();
  };
  auto known = [&] { return platform_->status("GET", "/v1/hosts/h-agent", Json()) == 200; };
  {
    harness::Child agent({PLATFORM_AGENT_BIN, "--join", token, "--control", platform_->url, "--state", state.string(),
                          "--name", "h-agent"},
                         log);
    ASSERT_TRUE(wait_for(known)) << "the agent did not enrol";
    agent.signal(SIGTERM);
    int status = agent.wait();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_EQ(fs::status(state / "host.json").permissions() & fs::perms::mask,
            fs::perms::owner_read | fs::perms::owner_write);
  const auto id = host("h-agent")["id"];
  {
    // No --join: the identity in the state folder is enough (the token is spent anyway).
    harness::Child agent({PLATFORM_AGENT_BIN, "--control", platform_->url, "--state", state.string()}, log);
    auto seen = host("h-agent")["last_heartbeat"];
    EXPECT_TRUE(wait_for([&] { return host("h-agent")["last_heartbeat"] != seen; }));
    EXPECT_EQ(host("h-agent")["id"], id);
    // Its heartbeat carries its build: the one this test was built with.
    EXPECT_EQ(host("h-agent")["agent_version"], build_info().version);
    EXPECT_EQ(host("h-agent")["agent_commit"], build_info().commit);
    // A second agent on the same state folder is refused (exit 6): it would run the host's instances twice.
    const auto second_log = (harness::PgEnvironment::get().root() / "agent-second.log").string();
    harness::Child second({PLATFORM_AGENT_BIN, "--control", platform_->url, "--state", state.string()}, second_log);
    const int second_status = second.wait();
    EXPECT_TRUE(WIFEXITED(second_status) && WEXITSTATUS(second_status) == 6) << second_status;
    std::ifstream second_out(second_log);
    const std::string said((std::istreambuf_iterator<char>(second_out)), std::istreambuf_iterator<char>());
    EXPECT_NE(said.find("another platform-agent (pid " + std::to_string(agent.pid()) + ") already runs here: it holds " +
                        (state / "agent.lock").string()),
              std::string::npos)
        << said;
    // So is a second edge for the host (its lock beside host.json): it would fight the first over its
    // listeners and its reports.
    const auto edge_log = (harness::PgEnvironment::get().root() / "edge.log").string();
    const auto edge_args = std::vector<std::string>{PLATFORM_EDGE_BIN, "--control", platform_->url, "--host-identity",
                                                    (state / "host.json").string()};
    harness::Child edge(edge_args, edge_log);
    ASSERT_TRUE(wait_for([&] { return fs::exists(state / "edge.lock") && fs::file_size(state / "edge.lock") > 0; }));
    const auto second_edge_log = (harness::PgEnvironment::get().root() / "edge-second.log").string();
    harness::Child second_edge(edge_args, second_edge_log);
    const int second_edge_status = second_edge.wait();
    EXPECT_TRUE(WIFEXITED(second_edge_status) && WEXITSTATUS(second_edge_status) == 6) << second_edge_status;
    std::ifstream second_edge_out(second_edge_log);
    const std::string edge_said((std::istreambuf_iterator<char>(second_edge_out)), std::istreambuf_iterator<char>());
    EXPECT_NE(edge_said.find("another platform-edge (pid " + std::to_string(edge.pid()) + ") already runs here"),
              std::string::npos)
        << edge_said;
    // The first edge's status report carries its build; host describe shows it.
    const Json build = {{"version", build_info().version}, {"commit", build_info().commit}};
    EXPECT_TRUE(wait_for([&] {
      const auto h = host("h-agent");
      return h["edge"].is_object() && h["edge"].value("build", Json()) == build;
    })) << host("h-agent").dump();
    edge.signal(SIGTERM);
    edge.wait();
    agent.signal(SIGTERM);
    agent.wait();
  }
  // Stopped: the liveness reconciler marks it down after the grace period.
  reconcilers::HostLiveness liveness(platform_->conninfo, std::chrono::milliseconds(1000),
                                     std::chrono::milliseconds(100));
  std::thread t([&] { liveness.run(); });
  EXPECT_TRUE(wait_for([&] { return host("h-agent")["state"] == "down"; }));
  liveness.stop();
  t.join();
  // Without an identity and without a token the agent says what it needs (exit 2).
  harness::Child lost({PLATFORM_AGENT_BIN, "--control", platform_->url, "--state", (state / "none").string()}, log);
  int status = lost.wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2);
}

}  // namespace

// The agent's side of the API (assignments, reports, secrets) takes only host credentials and refuses
// malformed input with 4xx; a report about an instance the host does not run is refused on its own.
TEST_F(HostsTest, TheAgentApiTakesHostCredentialsAndRefusesBadInput) {
  auto cred = Json::parse(enrol(join_token(), "h-agent-api").body)["credential"].get<std::string>();
  api::Client agent(platform_->url, cred);
  EXPECT_EQ(api::Client(platform_->url, "").request("GET", "/v1/agent/assignments").status, 401);
  EXPECT_EQ(api::Client(platform_->url, platform_->token).request("GET", "/v1/agent/assignments").status, 401);
  auto set = agent.call("GET", "/v1/agent/assignments");
  EXPECT_EQ(set["version"], 0);
  EXPECT_TRUE(set["instances"].empty());
  EXPECT_EQ(agent.request("GET", "/v1/agent/assignments?after=abc").status, 400);
  EXPECT_EQ(agent.request("GET", "/v1/agent/assignments?after=0&wait=5m").status, 400);
  // Nothing changes: the long poll answers when its wait ends, with the same version.
  auto start = std::chrono::steady_clock::now();
  auto same = agent.call("GET", "/v1/agent/assignments?after=0&wait=300ms");
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(250));
  EXPECT_FALSE(same["changed"].get<bool>());

  auto post = [&](const Json& body) { return agent.request("POST", "/v1/agent/reports", body.dump()); };
  const Json good = {{"event_id", "0192a2c4-0000-7000-8000-000000000001"}, {"instance_id", "ins_notmine"},
                     {"seq", 1}, {"type", "InstanceStarted"}, {"at", "2026-11-22T00:00:00Z"}, {"data", Json::object()}};
  EXPECT_EQ(post(Json{{"reports", "nope"}}).status, 400);
  EXPECT_EQ(post(Json{{"reports", Json::array({1})}}).status, 400);
  for (const auto& [key, value] : std::vector<std::pair<std::string, Json>>{
           {"type", "InstanceExploded"}, {"event_id", "not-a-uuid"}, {"seq", 0}, {"data", "x"}}) {
    Json bad = good;
    bad[key] = value;
    auto r = post(Json{{"reports", Json::array({bad})}});
    EXPECT_EQ(r.status, 400) << key << ": " << r.body;
  }
  auto refused = post(Json{{"reports", Json::array({good})}});
  ASSERT_EQ(refused.status, 200) << refused.body;
  auto out = Json::parse(refused.body);
  EXPECT_EQ(out["applied"], 0);
  ASSERT_EQ(out["rejected"].size(), 1u);
  EXPECT_NE(out["rejected"][0]["reason"].get<std::string>().find("not on this host"), std::string::npos);
  EXPECT_EQ(api::Client(platform_->url, platform_->token).request("POST", "/v1/agent/reports",
                                                                  Json{{"reports", Json::array()}}.dump()).status, 401);
  auto secrets = agent.request("GET", "/v1/agent/instances/ins_notmine/secrets");
  EXPECT_TRUE(secrets.status == 404 || secrets.status == 503) << secrets.body;
  EXPECT_TRUE(platform_->healthy());
}
