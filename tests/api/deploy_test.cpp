// Deploys, releases and rollbacks through the REST API, against a real PostgreSQL and a real OCI
// registry (docker-registry) the test starts: gates, no-op redeploys, rollback determinism,
// idempotency under concurrency, stale plans, immutability in the database, and bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <thread>

#include "engine/crypto.h"
#include "engine/error_details.h"
#include "engine/oci/registry.h"
#include "platformd/local_postgres.h"
#include "platformd/local_registry.h"
#include "tests/support/api_platform.h"
#include "tests/support/registry_push.h"

using namespace platform;
namespace fs = std::filesystem;

namespace {

const std::string kEnvs = "/v1/orgs/acme/projects/shop/apps/api/envs/";

std::string manifest(const std::string& extra = "", int count = 2) {
  return "schema_version = 1\n[app]\nname = \"api\"\n[processes.web]\ncount = " + std::to_string(count) +
         "\nmemory = \"256MiB\"\n" + extra;
}

class DeployTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(harness::PgEnvironment::get().root() / "registry");
    registry_ = new dev::LocalRegistry({dir_->string(), dev::free_loopback_port(32000, 36000), ""});
    registry_->start();
    platform_ = new harness::Platform();
    harness::create_envs(platform_->client(), {"prod", "staging", "plans", "idem", "bad", "gates", "roll", "events"});
    oci::RegistryClient c;
    for (const auto& tag : {"v1", "v2"}) {
      auto ref = oci::parse_image_ref(registry_->address() + "/acme/api:" + tag);
      digests_[tag] = harness::push_manifest(c, ref, tag, oci::kOciManifest,
                                             harness::push_image(c, ref, "amd64", std::string("layer ") + tag));
    }
  }
  static void TearDownTestSuite() {
    delete platform_;
    delete registry_;
    delete dir_;
  }

  static std::string image(const std::string& tag) { return registry_->address() + "/acme/api:" + tag; }
  api::Client client() const { return platform_->client(); }
  Json deploy(const std::string& env, Json body, const std::string& key = "") const {
    return client().call("POST", kEnvs + env + "/deploys", body, key.empty() ? new_id("idem") : key,
                         std::chrono::seconds(60));
  }
  Json release(const std::string& env, const std::string& which) const {
    return client().call("GET", kEnvs + env + "/releases/" + which);
  }
  Json current(const std::string& env) const {
    auto list = client().call("GET", kEnvs + env + "/releases");
    for (const auto& r : list["releases"])
      if (r.value("current", false)) return r;
    return Json();
  }
  // The error a call throws (code and, for detailed errors, details).
  static std::pair<ErrorCode, Json> error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const DetailedError& e) {
      return {e.error().code, e.details()};
    } catch (const PlatformError& e) {
      return {e.error().code, Json{{"message", e.error().message}}};
    }
    return {ErrorCode::internal, Json("no error")};
  }

  static inline fs::path* dir_ = nullptr;
  static inline dev::LocalRegistry* registry_ = nullptr;
  static inline harness::Platform* platform_ = nullptr;
  static inline std::map<std::string, std::string> digests_;
};

TEST_F(DeployTest, ADeployResolvesTheTagCreatesAReleaseAndPointsTheEnvAtIt) {
  auto r = deploy("prod", {{"image", image("v1")}, {"manifest", manifest()}});
  EXPECT_EQ(r["release"]["number"], 1);
  EXPECT_EQ(r["release"]["image_digest"], digests_["v1"]);
  EXPECT_TRUE(r["created"].get<bool>());
  EXPECT_EQ(r["kind"], "deploy");
  ASSERT_EQ(r["events"].size(), 2u);  // what it appended, by type
  EXPECT_EQ(r["events"][0]["type"], "ReleaseCreated");
  EXPECT_EQ(r["events"][1]["type"], "EnvReleaseSet");
  std::set<std::string> kinds;
  for (const auto& d : r["diff"]) kinds.insert(d["kind"].get<std::string>() + " " + d["action"].get<std::string>());
  EXPECT_TRUE(kinds.count("image add") && kinds.count("process add")) << r["diff"].dump();
  // What to run next: wait for the rollout first; no rollback, the env has run nothing else.
  ASSERT_FALSE(r["next"].empty());
  EXPECT_EQ(r["next"][0], "platform wait --project shop --app api --env prod");
  EXPECT_EQ(r["next"].dump().find("platform rollback"), std::string::npos) << r["next"].dump();
  auto cur = current("prod");
  EXPECT_EQ(cur["id"], r["release"]["id"]);
  EXPECT_EQ(cur["image"]["tag"], "v1");
  auto full = release("prod", "v1");
  EXPECT_EQ(full["manifest"]["processes"]["web"]["count"], 2);
  EXPECT_EQ(full["manifest_hash"].get<std::string>().rfind("sha256:", 0), 0u);
  // The env's override applies: staging's count is its own.
  auto s = deploy("staging", {{"image", image("v1")},
                              {"manifest", manifest("[env.staging.processes.web]\ncount = 1\n")}});
  EXPECT_EQ(release("staging", "v1")["manifest"]["processes"]["web"]["count"], 1);
  EXPECT_EQ(s["release"]["image_digest"], digests_["v1"]);
}

TEST_F(DeployTest, RedeployingIdenticalContentIsANoOpThatSaysSo) {
  auto first = deploy("prod", {{"image", image("v1")}, {"manifest", manifest()}});
  auto again = deploy("prod", {{"image", image("v1")}, {"manifest", manifest()}});
  EXPECT_TRUE(again["duplicate"].get<bool>());
  EXPECT_EQ(again["release"]["id"], first["release"]["id"]);
  EXPECT_TRUE(again["events"].empty());
  EXPECT_NE(again["note"].get<std::string>().find("nothing changed"), std::string::npos);
  // Without image and manifest, the current ones are used: also nothing to do.
  EXPECT_TRUE(deploy("prod", Json::object())["duplicate"].get<bool>());
}

TEST_F(DeployTest, GatesListEveryMissingKeyThenAllowTheDeployOnceSet) {
  auto m = manifest("[config]\nrequired = [\"DATABASE_URL\", \"REGION\"]\noptional = [\"LOG_LEVEL\"]\n"
                    "[secrets]\nrequired = [\"API_KEY\"]\n");
  auto [code, details] = error_of([&] { deploy("gates", {{"image", image("v1")}, {"manifest", m}}); });
  ASSERT_EQ(code, ErrorCode::precondition_failed);
  EXPECT_EQ(exit_code(code), 6);
  ASSERT_EQ(details.size(), 3u) << details.dump();
  std::set<std::string> keys;
  for (const auto& d : details) {
    keys.insert(d["key"].get<std::string>());
    EXPECT_NE(d["command"].get<std::string>().find("--env gates"), std::string::npos);
  }
  EXPECT_EQ(keys, (std::set<std::string>{"DATABASE_URL", "REGION", "API_KEY"}));
  EXPECT_EQ(current("gates"), Json());  // nothing was deployed

  client().call("PATCH", kEnvs + "gates/config", Json{{"set", {{"DATABASE_URL", "postgres://db"}, {"REGION", "eu"},
                                                               {"UNUSED", "x"}}}});
  auto still = error_of([&] { deploy("gates", {{"image", image("v1")}, {"manifest", m}}); });
  ASSERT_EQ(still.first, ErrorCode::precondition_failed);
  ASSERT_EQ(still.second.size(), 1u);
  EXPECT_EQ(still.second[0]["key"], "API_KEY");
  EXPECT_NE(still.second[0]["command"].get<std::string>().find("platform secrets set API_KEY"), std::string::npos);

  client().call("PATCH", kEnvs + "gates/secrets", Json{{"set", {{"API_KEY", base64_encode("k-123")}}}});
  auto ok = deploy("gates", {{"image", image("v1")}, {"manifest", m}});
  EXPECT_EQ(ok["config_version"], 1);
  EXPECT_EQ(ok["secrets_version"], 1);
  EXPECT_EQ(ok["not_delivered"]["config"], Json::array({"UNUSED"}));
  auto rel = release("gates", "v1");
  EXPECT_EQ(rel["config_version"], 1);
  EXPECT_EQ(rel["secrets_version"], 1);
  EXPECT_TRUE(rel["delivered"]["config"].contains("DATABASE_URL"));
  EXPECT_FALSE(rel["delivered"]["config"].contains("UNUSED"));
  EXPECT_EQ(rel.dump().find("k-123"), std::string::npos);
  EXPECT_EQ(rel.dump().find(base64_encode("k-123")), std::string::npos);

  // A new config value is a new config version and so a new release.
  // Its receipt says it is not running until a deploy, and which keys a deploy would not deliver.
  auto set = client().call("PATCH", kEnvs + "gates/config", Json{{"set", {{"REGION", "us"}, {"STRAY", "x"}}}});
  EXPECT_EQ(set["note"], "config v2 is not running yet: release v1 runs config v1 until the next deploy. STRAY is not "
                         "declared in release v1's platform.toml ([config] required or optional), so a deploy would "
                         "not deliver it");
  EXPECT_EQ(set["next"][0], "platform diff --project shop --app api --env gates");
  auto next = deploy("gates", Json::object());
  EXPECT_EQ(next["release"]["number"], 2);
  EXPECT_EQ(next["config_version"], 2);
  bool saw = false;
  for (const auto& d : next["diff"])
    if (d["kind"] == "config" && d["name"] == "REGION" && d["action"] == "change") saw = true;
  EXPECT_TRUE(saw) << next["diff"].dump();
  EXPECT_EQ(next["diff"].dump().find("\"us\""), std::string::npos);  // values are redacted
}

TEST_F(DeployTest, RollbackReturnsExactlyToTheEarlierRelease) {
  auto a = deploy("roll", {{"image", image("v1")}, {"manifest", manifest("[config]\noptional = [\"MODE\"]\n")}});
  client().call("PATCH", kEnvs + "roll/config", Json{{"set", {{"MODE", "fast"}}}});
  auto b = deploy("roll", {{"image", image("v2")}, {"manifest", manifest("[config]\noptional = [\"MODE\"]\n", 3)}});
  EXPECT_NE(a["release"]["id"], b["release"]["id"]);
  // The way back names the release it goes to, so a command copied from the receipt keeps its meaning.
  EXPECT_NE(b["next"].dump().find("platform rollback v1 --project"), std::string::npos) << b["next"].dump();
  auto rb = client().call("POST", kEnvs + "roll/rollback", Json::object(), new_id("idem"));
  // A rollback's receipt offers no rollback: undoing it would bring back the release just left.
  EXPECT_EQ(rb["next"].dump().find("platform rollback"), std::string::npos) << rb["next"].dump();
  EXPECT_EQ(rb["release"]["id"], a["release"]["id"]);
  EXPECT_EQ(rb["rolled_back_from"]["id"], b["release"]["id"]);
  auto cur = current("roll");
  auto was = release("roll", a["release"]["id"].get<std::string>());
  for (const char* field : {"id", "image_digest", "manifest_hash", "config_version", "secrets_version", "content_hash"})
    EXPECT_EQ(cur[field], was[field]) << field;
  EXPECT_EQ(cur["image_digest"], digests_["v1"]);
  EXPECT_EQ(cur["config_version"], 0);  // A was made before MODE was set: it stays so
  // No new release was made; the rollback is an event.
  EXPECT_EQ(client().call("GET", kEnvs + "roll/releases")["releases"].size(), 2u);
  auto history = release("roll", "v1")["history"];
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[1]["reason"], "rollback");
  // Rolling back to a named release, and to the one already running (a no-op).
  EXPECT_EQ(client().call("POST", kEnvs + "roll/rollback", Json{{"release", "v2"}}, new_id("idem"))["release"]["id"],
            b["release"]["id"]);
  EXPECT_TRUE(client().call("POST", kEnvs + "roll/rollback", Json{{"release", "2"}}, new_id("idem"))["duplicate"]
                  .get<bool>());
  EXPECT_EQ(error_of([&] { client().call("POST", kEnvs + "roll/rollback", Json{{"release", "v9"}}); }).first,
            ErrorCode::not_found);
  try {  // the hint's command is exact: it names the project and app too
    client().call("POST", kEnvs + "roll/rollback", Json{{"release", "v9"}});
    ADD_FAILURE() << "a rollback to a release that does not exist succeeded";
  } catch (const PlatformError& e) {
    EXPECT_NE(e.error().hint.find("`platform releases list --project shop --app api --env roll`"), std::string::npos)
        << e.error().hint;
  }
  // Deploying A's content again reuses A.
  client().call("PATCH", kEnvs + "roll/config", Json{{"unset", {"MODE"}}});
  auto again = deploy("roll", {{"image", image("v1")}, {"manifest", manifest("[config]\noptional = [\"MODE\"]\n")}});
  EXPECT_EQ(again["release"]["number"], 3);  // config is now at version 2 (empty): new content, new release
}

TEST_F(DeployTest, TheSameIdempotencyKeyGivesOneReleaseEvenUnderConcurrency) {
  const std::string key = new_id("idem");
  Json body = {{"image", image("v2")}, {"manifest", manifest("", 4)}};
  std::vector<std::string> ids(8);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < ids.size(); ++i)
    threads.emplace_back([&, i] { ids[i] = deploy("idem", body, key)["release"]["id"].get<std::string>(); });
  for (auto& t : threads) t.join();
  for (const auto& id : ids) EXPECT_EQ(id, ids[0]);
  EXPECT_EQ(client().call("GET", kEnvs + "idem/releases")["releases"].size(), 1u);
  // Concurrent deploys of the same content without a key: one release, the others are no-ops.
  Json other = {{"image", image("v1")}, {"manifest", manifest("", 4)}};
  threads.clear();
  for (std::size_t i = 0; i < ids.size(); ++i)
    threads.emplace_back([&, i] { ids[i] = deploy("idem", other)["release"]["id"].get<std::string>(); });
  for (auto& t : threads) t.join();
  for (const auto& id : ids) EXPECT_EQ(id, ids[0]);
  EXPECT_EQ(client().call("GET", kEnvs + "idem/releases")["releases"].size(), 2u);
}

TEST_F(DeployTest, APlanAppliesOnlyOntoWhatItWasMadeAgainst) {
  auto dry = client().call("POST", kEnvs + "plans/deploys",
                           Json{{"image", image("v1")}, {"manifest", manifest()}, {"dry_run", true}});
  EXPECT_TRUE(dry["changed"].get<bool>());
  EXPECT_TRUE(current("plans").is_null());  // a dry run changes nothing
  auto plan = dry["plan"];
  EXPECT_EQ(plan["image"]["digest"], digests_["v1"]);
  // Another change lands first: the plan is stale.
  client().call("PATCH", kEnvs + "plans/config", Json{{"set", {{"A", "1"}}}});
  auto stale = error_of([&] { deploy("plans", {{"plan", plan}}); });
  EXPECT_EQ(stale.first, ErrorCode::precondition_failed);
  EXPECT_NE(stale.second["message"].get<std::string>().find("stale"), std::string::npos);
  // A fresh plan applies, exactly.
  plan = client().call("POST", kEnvs + "plans/deploys",
                       Json{{"image", image("v1")}, {"manifest", manifest()}, {"dry_run", true}})["plan"];
  auto applied = deploy("plans", {{"plan", plan}});
  EXPECT_EQ(applied["release"]["image_digest"], plan["image"]["digest"]);
  EXPECT_EQ(release("plans", "v1")["content_hash"], plan["content_hash"]);
  // ... once: the env has moved on from the plan's base.
  EXPECT_EQ(error_of([&] { deploy("plans", {{"plan", plan}}); }).first, ErrorCode::precondition_failed);
  // A plan is for its own env.
  EXPECT_EQ(error_of([&] { deploy("prod", {{"plan", plan}}); }).first, ErrorCode::invalid_request);
  // A dry run without gates still shows the diff.
  auto g = client().call("POST", kEnvs + "plans/deploys",
                         Json{{"manifest", manifest("[secrets]\nrequired = [\"S\"]\n")}, {"dry_run", true},
                              {"check_gates", false}});
  EXPECT_EQ(g["missing"].size(), 1u);
}

TEST_F(DeployTest, ReleasesCannotBeChangedInTheDatabase) {
  deploy("prod", {{"image", image("v1")}, {"manifest", manifest()}});
  pqxx::connection c(platform_->conninfo);
  for (const std::string sql : {"UPDATE core.releases SET config_version = 99", "DELETE FROM core.releases",
                                "TRUNCATE core.releases CASCADE"}) {
    pqxx::work tx(c);
    try {
      tx.exec(sql);
      ADD_FAILURE() << sql << " was allowed";
    } catch (const pqxx::sql_error& e) {
      EXPECT_EQ(e.sqlstate(), "PI002") << sql;
      EXPECT_NE(std::string(e.what()).find("immutable"), std::string::npos);
    }
  }
}

TEST_F(DeployTest, BadInputGetsAClearErrorAndChangesNothing) {
  auto code = [&](Json body) { return error_of([&] { deploy("bad", std::move(body)); }).first; };
  EXPECT_EQ(code({{"manifest", manifest()}}), ErrorCode::invalid_request);  // first deploy needs an image
  EXPECT_EQ(code({{"image", image("v1")}}), ErrorCode::invalid_request);    // ... and a manifest
  EXPECT_EQ(code({{"image", image("nope")}, {"manifest", manifest()}}), ErrorCode::not_found);
  EXPECT_EQ(code({{"image", "127.0.0.1:" + std::to_string(dev::free_loopback_port(36000, 40000)) + "/a/b:v1"},
                  {"manifest", manifest()}}),
            ErrorCode::unavailable);
  EXPECT_EQ(code({{"image", "Not A Ref"}, {"manifest", manifest()}}), ErrorCode::invalid_request);
  EXPECT_EQ(code({{"image", image("v1")}, {"manifest", "schema_version = 1\n[app]\nname = \"other\"\n"
                                                          "[processes.web]\n"}}),
            ErrorCode::invalid_request);
  auto invalid = error_of([&] { deploy("bad", {{"image", image("v1")}, {"manifest", manifest("[processes.web.x]\n")}}); });
  EXPECT_EQ(invalid.first, ErrorCode::invalid_request);
  ASSERT_TRUE(invalid.second.is_array());
  EXPECT_NE(invalid.second[0]["text"].get<std::string>().find("platform.toml:"), std::string::npos);
  EXPECT_EQ(code({{"image", image("v1")}, {"manifest", manifest()}, {"imagee", "x"}}), ErrorCode::invalid_request);
  // Volumes are in the manifest's format but hosts do not provide them yet: refused (exit 10), naming
  // each, rather than deployed onto disks that vanish with their instances. So is its dry run (diff).
  const auto with_volume = manifest("[[volumes]]\nname = \"data\"\nsize = \"1GiB\"\nmount = \"/var/lib/api\"\n"
                                    "process = \"web\"\n",
                                    1);
  EXPECT_EQ(code({{"image", image("v1")}, {"manifest", with_volume}}), ErrorCode::not_supported);
  EXPECT_EQ(code({{"image", image("v1")}, {"manifest", with_volume}, {"dry_run", true}}), ErrorCode::not_supported);
  auto refused = client().request("POST", kEnvs + "bad/deploys", Json{{"image", image("v1")}, {"manifest", with_volume}}.dump());
  EXPECT_EQ(refused.status, 501);
  EXPECT_NE(refused.body.find("declares volume \\\"data\\\" (1024 MiB at /var/lib/api for process web), and this "
                              "platform does not provide volumes yet"),
            std::string::npos)
      << refused.body;
  EXPECT_EQ(code({{"plan", {{"format", "nope"}}}}), ErrorCode::invalid_request);
  // An edited plan with wrong types is a 400, never a server error.
  auto plan = client().call("POST", kEnvs + "prod/deploys",
                            Json{{"image", image("v1")}, {"manifest", manifest()}, {"dry_run", true}})["plan"];
  for (const auto& [field, value] : std::vector<std::pair<std::string, Json>>{
           {"config_version", "1"}, {"base_release_id", 7}, {"image", {{"ref", 1}}}, {"env", nullptr},
           {"manifest_source", Json::array()}}) {
    auto edited = plan;
    edited[field] = value;
    EXPECT_EQ(error_of([&] { deploy("prod", {{"plan", edited}}); }).first, ErrorCode::invalid_request) << field;
  }
  EXPECT_EQ(error_of([&] { client().call("POST", kEnvs + "bad/rollback", Json::object()); }).first,
            ErrorCode::precondition_failed);
  EXPECT_TRUE(current("bad").is_null());
}

TEST_F(DeployTest, EveryStepIsAnEventWithActorAndOperation) {
  auto r = deploy("events", {{"image", image("v1")}, {"manifest", manifest()}});
  pqxx::connection c(platform_->conninfo);
  pqxx::work tx(c);
  auto rows = tx.exec_params(
      "SELECT type, metadata->>'actor', metadata->>'operation_id', metadata->>'resource_id' FROM events"
      " WHERE metadata->>'operation_id' = $1 ORDER BY global_position",
      r["operation_id"].get<std::string>());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][0].as<std::string>(), "ReleaseCreated");
  EXPECT_EQ(rows[0][3].as<std::string>(), r["release"]["id"].get<std::string>());
  EXPECT_EQ(rows[1][0].as<std::string>(), "EnvReleaseSet");
  for (const auto& row : rows) EXPECT_EQ(row[1].as<std::string>().rfind("usr_", 0), 0u);
  auto audit = tx.exec_params("SELECT reason, release_id FROM audit.deploys WHERE operation_id = $1",
                              r["operation_id"].get<std::string>());
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0][0].as<std::string>(), "deploy");
  auto op = tx.exec_params("SELECT kind, events FROM audit.operations WHERE operation_id = $1",
                           r["operation_id"].get<std::string>());
  ASSERT_EQ(op.size(), 1u);
  EXPECT_EQ(op[0][0].as<std::string>(), "deploy");
  EXPECT_EQ(tx.exec("SELECT count(*) FROM audit.releases")[0][0].as<int>() > 0, true);
}

}  // namespace
