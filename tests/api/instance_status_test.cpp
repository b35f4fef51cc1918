// `platform status` (GET .../status) against a real PostgreSQL, a real OCI registry and the real
// scheduler: a restarting instance is named as a problem (and one back up but not yet healthy after
// restarts, with how its last run ended), and an instance that `platform scale
// --memory` has resized is not current until its replacement is, so `platform wait` cannot report
// convergence in the moment between the scale and the scheduler's next pass. The agent's side
// (running, healthy) is written as its reports would.
#include <gtest/gtest.h>

#include "tests/support/api_platform.h"
#include "tests/support/one_image_registry.h"
#include "tests/support/test_scheduler.h"

using namespace platform;
namespace fs = std::filesystem;

namespace {

const std::string kEnv = "/v1/orgs/acme/projects/shop/apps/api/envs/prod";

struct Web {
  int current = -1, outdated = -1, stopping = -1;
};

Web web_of(const Json& status) {
  for (const auto& p : status["processes"])
    if (p["process"] == "web") return {p["current"].get<int>(), p["outdated"].get<int>(), p["stopping"].get<int>()};
  return {};
}

TEST(InstanceStatus, RestartingInstancesAreProblemsAndResizedOnesAreNotCurrent) {
  harness::OneImageRegistry registry("registry-status");
  const auto& image = registry.image;
  harness::Platform p;
  harness::create_envs(p.client(), {"prod"});
  auto sql = [&](const std::string& q) { return harness::exec_sql(p.conninfo, q); };
  harness::enrol_roomy_host(p.conninfo, "big");
  p.client().call("POST", kEnv + "/deploys",
                  Json{{"image", image},
                       {"manifest", "schema_version = 1\n[app]\nname = \"api\"\n[processes.web]\ncount = 1\n"
                                    "memory = \"64MiB\"\n"}},
                  new_id("idem"), std::chrono::seconds(60));
  harness::TestScheduler scheduler(p.conninfo);
  ASSERT_EQ(scheduler.pass().placed, 1);
  const auto serve_all = "UPDATE core.instances SET state = 'running', health = 'healthy' WHERE desired = 'run'";
  sql(serve_all);
  auto status = [&] { return p.client().call("GET", kEnv + "/status"); };
  ASSERT_EQ(status()["phase"], "converged") << status().dump();
  // An instance and a release by ID alone: what it is and the env that holds it; another org's, never.
  const auto ins = p.client().call("GET", kEnv + "/instances")["instances"][0];
  const auto ins_id = ins["id"].get<std::string>();
  auto by_id = p.client().call("GET", "/v1/resources/" + ins_id);
  EXPECT_EQ(by_id["kind"], "instance");
  EXPECT_EQ(by_id["name"], ins["name"]);
  EXPECT_EQ(by_id["path"], "org/acme/project/shop/app/api/env/prod/instance/" + ins["name"].get<std::string>());
  EXPECT_EQ(by_id["parent_id"].get<std::string>().rfind("env_", 0), 0u) << by_id.dump();
  const auto rel_id = p.client().call("GET", kEnv + "/releases")["releases"][0]["id"].get<std::string>();
  auto rel = p.client().call("GET", "/v1/resources/" + rel_id);
  EXPECT_EQ(rel["kind"], "release");
  EXPECT_EQ(rel["path"], "org/acme/project/shop/app/api/env/prod/release/v1");
  EXPECT_EQ(p.status("GET", "/v1/resources/" + ins_id, Json(), p.other_token), 404);
  EXPECT_EQ(p.status("GET", "/v1/resources/ins_01m96z44hmea985w0twkqhy8wm", Json()), 404);

  // An instance waiting out its restart backoff is a problem named with how it ended and when it retries.
  sql("UPDATE core.instances SET state = 'restarting', health = 'starting',"
      " state_reason = 'exited with status 3; restarting in 8.0 s (attempt 3 of 10)'");
  auto restarting = status();
  EXPECT_EQ(restarting["phase"], "progressing");
  EXPECT_EQ(restarting["problems"], Json::array({"web-1: restarting: exited with status 3; restarting in 8.0 s (attempt 3 of 10)"}));
  // It wrote nothing yet: no last output. Once its runs wrote lines, status shows the last line of the
  // latest run, and describe the tail of that run.
  EXPECT_TRUE(restarting["instances"][0]["last_output"].is_null()) << restarting.dump();
  for (int run = 0; run < 2; ++run)
    sql("INSERT INTO core.log_lines (org_id, env_id, instance_id, instance_name, process, run, stream, byte_offset, at,"
        " message) SELECT org_id, env_id, id, name, process, id || '-r" + std::to_string(run) + "', s, o, now(),"
        " 'run " + std::to_string(run) + " ' || s || ' ' || o FROM core.instances,"
        " (VALUES ('stdout', 0), ('stderr', 1)) AS l(s, o)");
  restarting = status();
  EXPECT_EQ(restarting["instances"][0]["last_output"]["message"], "run 1 stderr 1") << restarting.dump();
  EXPECT_EQ(restarting["instances"][0]["last_output"]["stream"], "stderr");
  auto described = p.client().call("GET", kEnv + "/instances/web-1");
  ASSERT_EQ(described["last_output"].size(), 2u) << described.dump();
  EXPECT_EQ(described["last_output"][0]["message"], "run 1 stdout 0");
  EXPECT_EQ(described["last_output"][1]["message"], "run 1 stderr 1");
  // Up again after its restarts but not healthy yet: still a problem, with how its last run ended, so
  // a deploy stuck on a failing health check says why (in status and in `platform wait`'s error).
  sql("UPDATE core.instances SET state = 'running', health = 'starting', restarts = 2, state_reason = 'restart 2',"
      " last_exit = '{\"reason\": \"stopped after failing its health check (cannot connect to port 8080: Connection refused)\"}'");
  auto back_up = status();
  EXPECT_EQ(back_up["phase"], "progressing");
  EXPECT_EQ(back_up["problems"], Json::array({"web-1: restarted 2 times, not healthy yet; its last run stopped after failing "
                                              "its health check (cannot connect to port 8080: Connection refused)"}));
  EXPECT_EQ(back_up["instances"][0]["last_output"]["message"], "run 1 stderr 1");
  sql(serve_all);  // healthy: restarts in its past are no problem, nor what it wrote
  EXPECT_EQ(status()["problems"], Json::array());
  EXPECT_TRUE(status()["instances"][0]["last_output"].is_null());

  // Scaled to 96 MiB: the 64 MiB instance still serves, but it is outdated, not current.
  p.client().call("POST", kEnv + "/scale", Json{{"processes", {{"web", {{"memory_mib", 96}}}}}}, new_id("idem"));
  auto st = status();
  EXPECT_EQ(st["phase"], "progressing") << st.dump();
  EXPECT_FALSE(st["converged"].get<bool>());
  auto web = web_of(st);
  EXPECT_EQ(web.current, 0);
  EXPECT_EQ(web.outdated, 1);

  // The scheduler places the 96 MiB replacement; once it serves, the old one is asked to stop; once
  // stopped, the env has converged again, at the new size.
  EXPECT_EQ(scheduler.pass().placed, 1);
  sql(serve_all);
  scheduler.pass();
  web = web_of(status());
  EXPECT_EQ(web.current, 1);
  EXPECT_EQ(web.stopping, 1);
  sql("UPDATE core.instances SET state = 'stopped' WHERE desired = 'stop'");
  st = status();
  EXPECT_EQ(st["phase"], "converged") << st.dump();
  ASSERT_EQ(st["instances"].size(), 1u);
  EXPECT_EQ(st["instances"][0]["memory_mib"], 96);
}

// `platform restart`: every instance placed before it is outdated at once (so `wait` cannot say
// converged before the scheduler's next pass), replaced by a new one, and stopped once that one is
// healthy, with why. A process the release lacks, and an env with no release, are refused.
TEST(InstanceStatus, RestartReplacesEachInstanceOnceItsReplacementIsHealthy) {
  harness::OneImageRegistry registry("registry-restart");
  harness::Platform p;
  harness::create_envs(p.client(), {"prod", "empty"});
  auto sql = [&](const std::string& q) { return harness::exec_sql(p.conninfo, q); };
  harness::enrol_roomy_host(p.conninfo, "big");
  const auto empty = "/v1/orgs/acme/projects/shop/apps/api/envs/empty";
  EXPECT_EQ(p.status("POST", std::string(empty) + "/restart", Json::object()), 412);
  p.client().call("POST", kEnv + "/deploys",
                  Json{{"image", registry.image},
                       {"manifest", "schema_version = 1\n[app]\nname = \"api\"\n[processes.web]\ncount = 2\n"
                                    "memory = \"64MiB\"\n"}},
                  new_id("idem"), std::chrono::seconds(60));
  harness::TestScheduler scheduler(p.conninfo);
  ASSERT_EQ(scheduler.pass().placed, 2);
  const auto serve_all = "UPDATE core.instances SET state = 'running', health = 'healthy' WHERE desired = 'run'";
  sql(serve_all);
  auto status = [&] { return p.client().call("GET", kEnv + "/status"); };
  ASSERT_EQ(status()["phase"], "converged");
  EXPECT_EQ(p.status("POST", kEnv + "/restart", Json{{"processes", {"worker"}}}), 400);

  auto receipt = p.client().call("POST", kEnv + "/restart", Json::object(), new_id("idem"));
  ASSERT_EQ(receipt["diff"].size(), 1u) << receipt.dump();
  EXPECT_EQ(receipt["diff"][0]["instances"], 2);
  auto st = status();
  EXPECT_EQ(st["phase"], "progressing") << st.dump();
  EXPECT_EQ(web_of(st).outdated, 2);
  for (const auto& i : st["instances"]) EXPECT_TRUE(i["restart_pending"].get<bool>()) << i.dump();

  EXPECT_EQ(scheduler.pass().placed, 2);  // new ones first; the old ones serve meanwhile
  EXPECT_EQ(web_of(status()).stopping, 0);
  sql(serve_all);
  scheduler.pass();
  st = status();
  EXPECT_EQ(web_of(st).current, 2) << st.dump();
  EXPECT_EQ(web_of(st).stopping, 2);
  EXPECT_EQ(sql("SELECT count(*) FROM core.instances WHERE desired = 'stop'"
                " AND desired_reason = 'restarted: replaced by a new instance (platform restart)'")[0][0].as<int>(),
            2);
  sql("UPDATE core.instances SET state = 'stopped' WHERE desired = 'stop'");
  st = status();
  EXPECT_EQ(st["phase"], "converged") << st.dump();
  for (const auto& i : st["instances"]) EXPECT_FALSE(i["restart_pending"].get<bool>()) << i.dump();
  EXPECT_EQ(scheduler.pass().placed, 0);  // and it stays so

  // One instance alone (`platform instance restart`): asked twice, it is replaced once.
  const auto one = st["instances"][0]["name"].get<std::string>();
  auto asked = p.client().call("POST", kEnv + "/instances/" + one + "/restart", Json::object(), new_id("idem"));
  EXPECT_EQ(asked["diff"].size(), 1u) << asked.dump();
  auto again = p.client().call("POST", kEnv + "/instances/" + one + "/restart", Json::object(), new_id("idem"));
  EXPECT_TRUE(again["diff"].empty()) << again.dump();
  EXPECT_EQ(p.status("POST", kEnv + "/instances/web-99/restart", Json::object()), 404);
  EXPECT_EQ(p.status("POST", kEnv + "/instances/web-1/restart", Json::object()), 412);  // stopped above
  EXPECT_EQ(web_of(status()).outdated, 1);
  EXPECT_EQ(scheduler.pass().placed, 1);
  sql(serve_all);
  scheduler.pass();
  sql("UPDATE core.instances SET state = 'stopped' WHERE desired = 'stop'");
  st = status();
  EXPECT_EQ(st["phase"], "converged") << st.dump();
  EXPECT_EQ(web_of(st).current, 2);
  for (const auto& i : st["instances"]) EXPECT_NE(i["name"], one);
  auto history = p.client().call("GET", kEnv + "/instances/" + one);
  bool recorded = false;
  for (const auto& e : history["events"]) recorded |= e["type"] == "InstanceRestartRequested";
  EXPECT_TRUE(recorded) << history.dump();
}

}  // namespace
