// Interactive sessions (`platform exec -i/-it`) at the API, against a real PostgreSQL, a real OCI
// registry and the real scheduler. The test speaks both sides through the real server: the client's
// (a user token) and the agent's (the host's credential, as platform-agent does); tests/e2e runs the
// whole path with the CLI, the agent and runc. Shown here: chunks arrive once and in order, a retry
// is harmless, a waiting poll wakes on the other side's chunk, a reader that falls 4 MiB behind holds
// the writer back, the end carries the exit status and never overtakes the last bytes, and a side gone
// quiet ends the session.
#include <gtest/gtest.h>

#include <future>
#include <set>

#include "engine/crypto.h"
#include "tests/support/api_platform.h"
#include "tests/support/one_image_registry.h"
#include "tests/support/test_scheduler.h"

using namespace platform;

namespace {

const std::string kEnv = "/v1/orgs/acme/projects/shop/apps/api/envs/prod";

// A platform with one running instance (web-1) on host "big", and both sides' clients.
struct OneInstance {
  harness::OneImageRegistry registry{"registry-sessions"};
  harness::Platform p;
  std::string host;
  OneInstance() {
    harness::create_envs(p.client(), {"prod"});
    host = harness::enrol_roomy_host(p.conninfo, "big");
    p.client().call("POST", kEnv + "/deploys",
                    Json{{"image", registry.image},
                         {"manifest", "schema_version = 1\n[app]\nname = \"api\"\n[processes.web]\ncount = 1\n"}},
                    new_id("idem"), std::chrono::seconds(60));
    harness::TestScheduler scheduler(p.conninfo);
    if (scheduler.pass().placed != 1) throw std::runtime_error("the instance was not placed");
    harness::exec_sql(p.conninfo, "UPDATE core.instances SET state = 'running', health = 'healthy' WHERE desired = 'run'");
  }
  std::string open(api::Client& user, const Json& body) {
    return user.call("POST", kEnv + "/instances/web/sessions", body)["session_id"].get<std::string>();
  }
};

TEST(Sessions, BytesTravelInOrderBothWaysAndEitherSideGoneEndsThem) {
  OneInstance one;
  auto& p = one.p;
  auto sql = [&](const std::string& q) { return harness::exec_sql(p.conninfo, q); };
  const auto host = one.host;
  auto user = p.client();
  api::Client agent(p.url, host);
  auto open = [&](const Json& body) { return one.open(user, body); };

  const auto id = open({{"command", {"/bin/sh"}}, {"tty", true}, {"rows", 40}, {"cols", 120}, {"env", {{"TERM", "xterm"}}}});
  const auto base = "/v1/sessions/" + id, agent_base = "/v1/agent/sessions/" + id;
  // Another org's user finds no such session, whatever the verb.
  EXPECT_EQ(p.status("GET", base + "/output", Json(), p.other_token), 404);
  EXPECT_EQ(p.status("POST", base + "/input", Json{{"seq", 1}}, p.other_token), 404);
  EXPECT_EQ(p.status("DELETE", base, Json(), p.other_token), 404);

  // The agent is handed the session once, with what to start.
  auto taken = agent.call("GET", "/v1/agent/exec?wait=5s")["sessions"];
  ASSERT_EQ(taken.size(), 1u) << taken.dump();
  EXPECT_EQ(taken[0]["session_id"], id);
  EXPECT_EQ(taken[0]["command"], Json::array({"/bin/sh"}));
  EXPECT_EQ(taken[0]["tty"], true);
  EXPECT_EQ(taken[0]["rows"], 40);
  EXPECT_EQ(taken[0]["env"]["TERM"], "xterm");
  EXPECT_TRUE(agent.call("GET", "/v1/agent/exec?wait=1s")["sessions"].empty());

  // Input: in order, a retried seq only once, a resize among the bytes.
  user.call("POST", base + "/input", Json{{"seq", 1}, {"data", base64_encode("ls\r")}});
  user.call("POST", base + "/input", Json{{"seq", 1}, {"data", base64_encode("ls\r")}});  // a retry
  user.call("POST", base + "/input", Json{{"seq", 2}, {"rows", 50}, {"cols", 132}});
  auto in = agent.call("GET", agent_base + "/input?after=0&wait=5s");
  ASSERT_EQ(in["chunks"].size(), 2u) << in.dump();
  EXPECT_EQ(base64_decode(in["chunks"][0]["data"].get<std::string>()), "ls\r");
  EXPECT_EQ(in["chunks"][1]["rows"], 50);
  EXPECT_EQ(in["next"], 2);
  EXPECT_EQ(in["close"], false);
  // A waiting poll wakes for the other side's chunk (its NOTIFY), long before its wait ends.
  const auto asked = std::chrono::steady_clock::now();
  auto waiting = std::async(std::launch::async, [&] { return agent.call("GET", agent_base + "/input?after=2&wait=30s", std::nullopt, std::string(), std::chrono::seconds(40)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  user.call("POST", base + "/input", Json{{"seq", 3}, {"data", base64_encode("\x03")}});
  auto woke = waiting.get();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, std::chrono::seconds(20));
  ASSERT_EQ(woke["chunks"].size(), 1u) << woke.dump();
  EXPECT_EQ(woke["chunks"][0]["seq"], 3);
  // Read chunks are deleted once the next poll acknowledges them.
  agent.call("GET", agent_base + "/input?after=3");
  EXPECT_EQ(sql("SELECT count(*) FROM core.exec_session_chunks WHERE stream = 'i'")[0][0].as<int>(), 0);

  // Output: the client reads what the agent sent; 4 MiB unread holds the agent back until it reads.
  const std::string block(64 << 10, 'x');
  std::int64_t seq = 0;
  int refused = 0;
  for (int i = 0; i < 80 && !refused; ++i) {
    auto r = agent.request("POST", agent_base + "/output", Json{{"seq", seq + 1}, {"data", base64_encode(block)}}.dump());
    if (r.status == 200) ++seq;
    else if (r.status == 503) ++refused;
    else FAIL() << r.status << " " << r.body;
  }
  EXPECT_EQ(refused, 1);
  EXPECT_GE(seq * (64 << 10), 4 << 20);
  std::int64_t read = 0;
  std::string got;
  while (read < seq) {
    auto out = user.call("GET", base + "/output?after=" + std::to_string(read) + "&wait=5s");
    for (const auto& c : out["chunks"]) got += base64_decode(c["data"].get<std::string>()).value_or("");
    ASSERT_GT(out["next"].get<std::int64_t>(), read) << out.dump();
    read = out["next"].get<std::int64_t>();
  }
  EXPECT_EQ(got.size(), static_cast<std::size_t>(seq) * block.size());
  EXPECT_EQ(agent.request("POST", agent_base + "/output", Json{{"seq", seq + 1}, {"data", base64_encode("$ ")}}.dump()).status, 200);

  // The end: after the last chunk, `ended` with the exit status; input is refused from then on.
  agent.call("POST", agent_base + "/output", Json{{"seq", seq + 2}, {"ended", true}, {"exit_code", 3}});
  auto last = user.call("GET", base + "/output?after=" + std::to_string(read) + "&wait=5s");
  EXPECT_EQ(base64_decode(last["chunks"][0]["data"].get<std::string>()), "$ ");
  EXPECT_EQ(last["ended"], false);
  auto end = user.call("GET", base + "/output?after=" + last["next"].dump() + "&wait=5s");
  EXPECT_EQ(end["ended"], true) << end.dump();
  EXPECT_EQ(end["exit_code"], 3);
  EXPECT_EQ(p.status("POST", base + "/input", Json{{"seq", 4}, {"data", "eA=="}}), 412);
  auto trail = user.call("GET", "/v1/orgs/acme/events?type=InstanceSession*&limit=1000")["events"];
  ASSERT_EQ(trail.size(), 2u) << trail.dump();
  EXPECT_EQ(trail[0]["data"]["reason"], "alice opens a terminal: /bin/sh");
  EXPECT_EQ(trail[0]["data"]["env"], Json::array({"TERM"}));  // names only
  EXPECT_EQ(trail[1]["data"]["reason"], "the session ended with status 3");

  // Ended before the agent took it: it never starts.
  const auto early = open({{"command", {"/bin/true"}}});
  user.call("DELETE", "/v1/sessions/" + early);
  auto early_end = user.call("GET", "/v1/sessions/" + early + "/output?wait=5s");
  EXPECT_EQ(early_end["ended"], true);
  EXPECT_EQ(early_end["error"], "closed before it started");
  EXPECT_TRUE(agent.call("GET", "/v1/agent/exec?wait=1s")["sessions"].empty());
  // Never taken (no agent asked in time): it ends, saying so.
  const auto untaken = open({{"command", {"/bin/true"}}});
  sql("UPDATE core.exec_sessions SET requested_at = now() - interval '1 minute' WHERE id = '" + untaken + "'");
  auto untaken_end = user.call("GET", "/v1/sessions/" + untaken + "/output?wait=5s");
  EXPECT_EQ(untaken_end["error"], "the agent on the instance's host did not take it in time") << untaken_end.dump();
  // Taken, then the agent went quiet for over a minute: it ends for the client.
  const auto orphan = open({{"command", {"/bin/true"}}});
  ASSERT_EQ(agent.call("GET", "/v1/agent/exec?wait=5s")["sessions"].size(), 1u);
  sql("UPDATE core.exec_sessions SET agent_seen_at = now() - interval '2 minutes' WHERE id = '" + orphan + "'");
  EXPECT_EQ(user.call("GET", "/v1/sessions/" + orphan + "/output?wait=5s")["error"],
            "the agent on the instance's host stopped relaying it");
  // The client went quiet for over a minute: the agent is told to end it, and why.
  const auto gone = open({{"command", {"/bin/sh"}}});
  ASSERT_EQ(agent.call("GET", "/v1/agent/exec?wait=5s")["sessions"].size(), 1u);
  auto still = agent.call("GET", "/v1/agent/sessions/" + gone + "/input?wait=1s");
  EXPECT_EQ(still["close"], false);
  sql("UPDATE core.exec_sessions SET client_seen_at = now() - interval '2 minutes' WHERE id = '" + gone + "'");
  auto told = agent.call("GET", "/v1/agent/sessions/" + gone + "/input?wait=5s");
  EXPECT_EQ(told["close"], true);
  EXPECT_EQ(told["why"], "the client went away");
  // Another host's credential reaches none of this host's sessions.
  const auto stranger = harness::enrol_roomy_host(p.conninfo, "other");
  EXPECT_EQ(api::Client(p.url, stranger).request("GET", "/v1/agent/sessions/" + gone + "/input").status, 404);

  // The trail has an end for every session that ended, whoever ended it.
  std::multiset<std::string> reasons;
  const auto ends = user.call("GET", "/v1/orgs/acme/events?type=InstanceSessionEnded&limit=1000");
  for (const auto& e : ends["events"])
    reasons.insert(e["data"]["reason"].get<std::string>() + " / " + e["metadata"]["actor"].get<std::string>());
  EXPECT_EQ(reasons, (std::multiset<std::string>{
                         "the session ended with status 3 / host:big",
                         "the session ended: closed before it started / " + trail[0]["metadata"]["actor"].get<std::string>(),
                         "the session ended: the agent on the instance's host did not take it in time / platformd:api",
                         "the session ended: the agent on the instance's host stopped relaying it / platformd:api"}));

  // At most 16 live sessions on a host.
  for (int i = 0; i < 15; ++i) open({{"command", {"/bin/sh"}}});  // with `gone`: 16 live
  auto over = user.request("POST", kEnv + "/instances/web/sessions", Json{{"command", {"/bin/sh"}}}.dump());
  EXPECT_EQ(over.status, 409) << over.body;  // capacity: exit 5
  EXPECT_NE(over.body.find("already runs 16 sessions"), std::string::npos) << over.body;
}

// The agent sends its last bytes and the end in one request while the client asks as fast as it can,
// with no wait: an answer that says "ended" never leaves a byte behind (the chunks and the state come
// from one snapshot; read apart, the end overtook the bytes in about 1 round of 40 here, and the CLI
// stops at the end). 200 rounds take about 3 s.
TEST(Sessions, TheEndNeverOvertakesTheLastBytes) {
  OneInstance one;
  auto user = one.p.client();
  api::Client agent(one.p.url, one.host);
  for (int round = 0; round < 200; ++round) {
    const auto id = one.open(user, {{"command", {"/bin/true"}}});
    ASSERT_EQ(agent.call("GET", "/v1/agent/exec?wait=5s")["sessions"].size(), 1u);
    auto reader = std::async(std::launch::async, [&] {
      std::string got;
      std::int64_t after = 0;
      for (int i = 0; i < 5000; ++i) {
        auto out = user.call("GET", "/v1/sessions/" + id + "/output?after=" + std::to_string(after));
        for (const auto& c : out["chunks"]) got += base64_decode(c["data"].get<std::string>()).value_or("");
        after = out["next"].get<std::int64_t>();
        if (out["ended"] == true) return got + " (status " + out["exit_code"].dump() + ")";
      }
      return got + " (never ended)";
    });
    std::this_thread::sleep_for(std::chrono::microseconds(round * 37 % 5000));
    agent.call("POST", "/v1/agent/sessions/" + id + "/output",
               Json{{"seq", 1}, {"data", base64_encode("bye\n")}, {"ended", true}, {"exit_code", 0}});
    EXPECT_EQ(reader.get(), "bye\n (status 0)") << "round " << round;
  }
}

}  // namespace
