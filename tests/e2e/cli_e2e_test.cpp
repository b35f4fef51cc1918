// End to end: `platformd dev` (its own PostgreSQL) driven by the `platform` CLI and audited with psql.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "engine/event_store.h"
#include "engine/oci/registry.h"
#include "tests/support/echo_manifest.h"
#include "tests/support/registry_push.h"
#include "engine/ids.h"
#include "engine/json.h"
#include "engine/crypto.h"
#include "tests/support/dev_platform.h"
#include "tests/support/pg.h"
#include "tests/support/process.h"
#include "tests/support/pty_run.h"

using namespace platform;
using namespace platform::e2e;


TEST(EndToEnd, CliAgainstPlatformdDev) {
  DevPlatform dev;

  auto proj = cli("-o json project create shop --org dev");
  ASSERT_EQ(proj.exit, 0) << proj.out;
  auto pj = one_json(proj);
  EXPECT_EQ(pj["resource"]["kind"], "project");
  EXPECT_EQ(pj["status"], "succeeded");
  ASSERT_FALSE(pj["next"].empty());
  EXPECT_EQ(pj["next"][0], "platform app create NAME --project shop");  // the first step inside it
  auto op = pj["operation_id"].get<std::string>();

  // The table receipt names each event it appended by type.
  auto app = cli("app create api --org dev --project shop");
  ASSERT_EQ(app.exit, 0) << app.out;
  EXPECT_NE(app.out.find(" AppCreated (app-app_"), std::string::npos) << app.out;
  // --quiet: a mutation prints only its operation id, the handle `wait` and `operation describe` take.
  auto quiet = cli("-q app create quiet --org dev --project shop");
  ASSERT_EQ(quiet.exit, 0) << quiet.out;
  ASSERT_EQ(quiet.out.rfind("op_", 0), 0u) << quiet.out;
  ASSERT_EQ(quiet.out.find('\n'), quiet.out.size() - 1) << quiet.out;
  EXPECT_EQ(cli("wait " + quiet.out.substr(0, quiet.out.size() - 1) + " --org dev --timeout 30s").exit, 0);
  auto described_op = one_json(cli("-o json operation describe " + quiet.out.substr(0, quiet.out.size() - 1) + " --org dev"));
  EXPECT_EQ(described_op["status"], "succeeded") << described_op.dump();
  ASSERT_EQ(cli("-q app delete quiet --org dev --project shop").exit, 0);
  auto envr = cli("-o json env create prod --org dev --project shop --app api");
  ASSERT_EQ(envr.exit, 0) << envr.out;
  auto env_id = one_json(envr)["resource"]["id"].get<std::string>();

  // Errors: one JSON document too, with the documented exit codes.
  struct Failing {
    std::string args;
    int exit;
    std::string code;
  };
  for (const auto& f : std::vector<Failing>{
           {"app create api --org dev --project shop", 6, "name_taken"},
           {"app describe nope --org dev --project shop", 7, "not_found"},
           {"app create", 2, "invalid_request"},
           {"env delete prod --org dev --project shop --app api --if-version 5", 6, "version_conflict"}}) {
    auto r = cli("-o json " + f.args);
    EXPECT_EQ(r.exit, f.exit) << f.args;
    EXPECT_EQ(one_json(r)["error"]["code"], f.code) << f.args;
  }
  auto badtoken = run("PLATFORM_TOKEN=plt_" + std::string(64, 'f') + " " + PLATFORM_BIN + " -o json org list");
  EXPECT_EQ(badtoken.exit, 8);

  // login: a refused token saves nothing (exit 8, saying where tokens come from); a good one, read from
  // stdin, becomes a context of its own and the current one, with the user's org.
  const auto config_before = slurp(dev.root() / "cli.json");
  auto refused = cli("-o json login --token plt_" + std::string(64, 'f') + " --url " + dev.url() + " --name other");
  EXPECT_EQ(refused.exit, 8) << refused.out;
  EXPECT_NE(one_json(refused)["error"]["hint"].get<std::string>().find("platformd token create"), std::string::npos);
  EXPECT_EQ(slurp(dev.root() / "cli.json"), config_before);
  auto in = run("cat " + (dev.root() / "state/admin-token").string() + " | " + PLATFORM_BIN + " -o json login --token - --url " +
                dev.url() + " --name other");
  ASSERT_EQ(in.exit, 0) << in.out;
  EXPECT_EQ(one_json(in)["context"], "other");
  auto shown = one_json(cli("-o json context show"));
  EXPECT_EQ(shown["context"], "other");
  EXPECT_EQ(shown["org"], "dev");
  EXPECT_EQ(cli("-o json org list").exit, 0);
  ASSERT_EQ(cli("context use dev").exit, 0);

  // version: the CLI's build and the server's, the same here (one build folder); the schema as the
  // server expects; --version and --client need no server; without a login, exit 8 naming --client.
  const auto versions = one_json(cli("-o json version"));
  ASSERT_TRUE(versions["client"]["version"].is_string()) << versions.dump();
  EXPECT_EQ(versions["client"]["version"], versions["server"]["version"]) << versions.dump();
  EXPECT_EQ(versions["client"]["commit"], versions["server"]["commit"]) << versions.dump();
  EXPECT_EQ(versions["server"]["schema"]["database"], versions["server"]["schema"]["binary"]);
  EXPECT_EQ(versions["warnings"], Json::array());
  EXPECT_EQ(versions["url"], dev.url());
  const auto dashdash = cli("--version");
  EXPECT_EQ(dashdash.exit, 0);
  EXPECT_EQ(dashdash.out, "platform " + versions["client"]["version"].get<std::string>() + " (commit " +
                              versions["client"]["commit"].get<std::string>() + ")\n");
  const auto nowhere = "PLATFORM_CONFIG=" + (dev.root() / "none.json").string() + " " + PLATFORM_BIN;
  EXPECT_EQ(one_json(run(nowhere + " -o json version --client"))["client"], versions["client"]);
  const auto unlogged = run(nowhere + " -o json version");
  EXPECT_EQ(unlogged.exit, 8);
  EXPECT_NE(one_json(unlogged)["error"]["hint"].get<std::string>().find("platform version --client"), std::string::npos)
      << unlogged.out;
  const auto platformd_version = run(std::string(PLATFORMD_BIN) + " version --database '" + dev.conninfo() + "'");
  EXPECT_EQ(platformd_version.exit, 0);
  EXPECT_NE(platformd_version.out.find("platformd " + versions["client"]["version"].get<std::string>()), std::string::npos)
      << platformd_version.out;
  EXPECT_NE(platformd_version.out.find("(up to date)"), std::string::npos) << platformd_version.out;

  // doctor: every check, ok or skipped here (exit 0); an env with nothing deployed is a warning; an API
  // that does not answer fails the run (exit 1), and the checks after it are not made.
  const auto healthy = cli("-o json doctor");
  EXPECT_EQ(healthy.exit, 0) << healthy.out;
  const auto checkup = one_json(healthy);
  EXPECT_EQ(checkup["ok"], true);
  std::vector<std::string> names;
  for (const auto& c : checkup["checks"]) {
    names.push_back(c["name"]);
    EXPECT_TRUE(c["result"] == "ok" || (c["name"] == "env" && c["result"] == "skip")) << c.dump();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"settings", "api", "version", "token", "hosts", "edges", "env"}));
  const auto undeployed = one_json(cli("-o json doctor --org dev --project shop --app api --env prod"));
  EXPECT_EQ(undeployed["checks"].back()["result"], "warn") << undeployed.dump();
  EXPECT_NE(undeployed["checks"].back()["hint"].get<std::string>().find("platform deploy --image REF"), std::string::npos);
  const auto unreachable = run("PLATFORM_URL=http://127.0.0.1:1 " + std::string(PLATFORM_BIN) + " -o json doctor");
  EXPECT_EQ(unreachable.exit, 1);
  const auto down = one_json(unreachable);
  EXPECT_EQ(down["ok"], false);
  ASSERT_EQ(down["checks"].size(), 2u) << down.dump();
  EXPECT_EQ(down["checks"][1]["name"], "api");
  EXPECT_EQ(down["checks"][1]["result"], "fail");
  EXPECT_FALSE(down["checks"][1]["hint"].get<std::string>().empty());

  // wait: an operation, a resource by ID, and one that appears later.
  EXPECT_EQ(cli("wait " + op).exit, 0);
  EXPECT_EQ(cli("wait " + env_id).exit, 0);
  EXPECT_EQ(cli("wait app/never --org dev --project shop --timeout 1s").exit, 4);
  std::thread later([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    cli("app create later --org dev --project shop");
  });
  auto waited = cli("wait app/later --org dev --project shop --timeout 20s");
  later.join();
  EXPECT_EQ(waited.exit, 0) << waited.out;

  // events: the audit trail.
  auto evs = cli("-o json events --org dev");
  ASSERT_EQ(evs.exit, 0) << evs.out;
  std::set<std::string> types;
  const auto all = one_json(evs);
  for (const auto& e : all["events"]) types.insert(e["type"].get<std::string>());
  for (const char* t : {"OrgCreated", "ProjectCreated", "AppCreated", "EnvCreated"}) EXPECT_TRUE(types.count(t)) << t;
  // -n: the newest ones only, in order, the same as the end of everything (nothing happens meanwhile).
  const auto newest = one_json(cli("-o json events -n 2 --org dev"));
  ASSERT_EQ(newest["events"].size(), 2u);
  EXPECT_EQ(newest["events"][0], all["events"][all["events"].size() - 2]);
  EXPECT_EQ(newest["events"][1], all["events"].back());
  EXPECT_EQ(one_json(cli("-o json events -n 1 --type ProjectCreated --org dev"))["events"][0]["type"], "ProjectCreated");
  EXPECT_EQ(cli("-o json events -n 0 --org dev").exit, 2);
  auto filtered = one_json(cli("-o json events --org dev --resource " + env_id));
  ASSERT_EQ(filtered["count"], 1);
  EXPECT_EQ(filtered["events"][0]["type"], "EnvCreated");
  // ... the same by KIND/NAME, with its parents' flags; a name that is neither is a usage error.
  auto by_name = one_json(cli("-o json events --org dev --project shop --app api --resource env/prod"));
  EXPECT_EQ(by_name["events"], filtered["events"]);
  EXPECT_EQ(cli("-o json events --org dev --resource prod").exit, 2);
  EXPECT_EQ(cli("-o json events --org dev --project shop --app api --resource env/nope").exit, 7);
  // ... and as the noun's own verb, by name or ID.
  EXPECT_EQ(one_json(cli("-o json env events prod --org dev --project shop --app api"))["events"], filtered["events"]);
  EXPECT_EQ(one_json(cli("-o json env events " + env_id + " --org dev"))["events"], filtered["events"]);
  EXPECT_EQ(cli("-o json app events nope --org dev --project shop").exit, 7);

  // Tokens: one for CI (-q prints the secret alone), used, revoked by the CLI; another revoked by an
  // operator with platformd. A revoked token is exit 8, saying so.
  auto ci = cli("-q token create --description ci --ttl 1h --org dev");
  ASSERT_EQ(ci.exit, 0) << ci.out;
  const auto ci_token = ci.out.substr(0, ci.out.find('\n'));
  ASSERT_EQ(ci_token.rfind("plt_", 0), 0u) << ci.out;
  const auto as_ci = "PLATFORM_TOKEN=" + ci_token + " " + PLATFORM_BIN;
  EXPECT_EQ(run(as_ci + " -o json org list").exit, 0);
  const auto ci_list = one_json(run(as_ci + " -o json token list"));
  ASSERT_EQ(ci_list["count"], 1) << ci_list.dump();  // a token of org dev sees dev's tokens only
  const auto ci_id = ci_list["current_token_id"].get<std::string>();
  const auto ci_who = one_json(run(as_ci + " -o json whoami"));  // who a CI job acts as
  EXPECT_EQ(ci_who["user"], "admin");
  EXPECT_EQ(ci_who["token_id"], ci_id);
  EXPECT_TRUE(ci_who["token_expires_at"].is_string()) << ci_who.dump();
  // In its last week (it has an hour), every command warns once on stderr; stdout stays the answer.
  const auto warned = run("{ " + as_ci + " org list 2>&1; }");
  const auto warning = "warning: token " + ci_id + " expires in ";
  EXPECT_NE(warned.out.find(warning), std::string::npos) << warned.out;
  EXPECT_EQ(warned.out.find(warning), warned.out.rfind(warning)) << warned.out;
  EXPECT_FALSE(ci_who["org_restriction"].get<std::string>().empty());
  EXPECT_TRUE(one_json(cli("-o json whoami"))["token_expires_at"].is_null());
  EXPECT_EQ(run(as_ci + " -o json token create --description wider --all-orgs").exit, 6);  // not beyond its org
  EXPECT_EQ(one_json(cli("-o json token revoke " + ci_id))["state"], "revoked");
  auto revoked_use = run(as_ci + " -o json org list");
  EXPECT_EQ(revoked_use.exit, 8);
  EXPECT_NE(revoked_use.out.find("was revoked at"), std::string::npos) << revoked_use.out;
  const auto leaked = one_json(cli("-o json token create --description leaked --all-orgs"));
  auto by_operator = run(std::string(PLATFORMD_BIN) + " token revoke " + leaked["id"].get<std::string>() +
                         " --database '" + dev.conninfo() + "'");
  EXPECT_EQ(by_operator.exit, 0);
  EXPECT_NE(by_operator.out.find("revoked at"), std::string::npos) << by_operator.out;
  EXPECT_EQ(run("PLATFORM_TOKEN=" + leaked["token"].get<std::string>() + " " + PLATFORM_BIN + " org list").exit, 8);
  EXPECT_EQ(cli("token create --description x --ttl forever").exit, 2);

  // psql: the audit views show the same operations; events cannot be rewritten.
  auto ops = run(dev.psql("SELECT kind FROM audit.operations WHERE operation_id = '" + op + "'"));
  EXPECT_EQ(ops.exit, 0);
  EXPECT_EQ(ops.out, "project.create\n");
  auto who = run(dev.psql("SELECT count(*) FROM audit.events WHERE type = 'EnvCreated' AND actor LIKE 'usr_%'"));
  EXPECT_EQ(who.out, "1\n");
  // ... who in words too: the user's name, in psql, in `platform events` and in the lists.
  EXPECT_EQ(run(dev.psql("SELECT actor_name FROM audit.operations WHERE operation_id = '" + op + "'")).out, "admin\n");
  EXPECT_EQ(one_json(cli("-o json events --org dev --type EnvCreated"))["events"][0]["metadata"]["actor_name"], "admin");
  EXPECT_EQ(one_json(cli("-o json project list --org dev"))["items"][0]["created_by_name"], "admin");
  auto upd = run(dev.psql("UPDATE events SET type = 'Forged'"));
  EXPECT_NE(upd.exit, 0);

  // config: set, a no-op, unset, list; each change a version with its receipt, visible in the audit.
  const std::string at = " --org dev --project shop --app api --env prod";
  auto set = cli("-o json config set LOG_LEVEL=debug 'GREETING=hello, world'" + at);
  ASSERT_EQ(set.exit, 0) << set.out;
  EXPECT_EQ(one_json(set)["config_version"], 1);
  EXPECT_TRUE(one_json(cli("-o json config set LOG_LEVEL=debug" + at))["duplicate"].get<bool>());
  EXPECT_EQ(one_json(cli("-o json config unset GREETING" + at))["config_version"], 2);
  EXPECT_EQ(cli("-o json config set 'not a pair'" + at).exit, 2);
  EXPECT_EQ(cli("-o json config list --org dev --project shop --app api --env staging").exit, 7);
  auto cfg_ops = run(dev.psql("SELECT count(*) FROM audit.operations WHERE kind = 'config.set'"));
  EXPECT_EQ(cfg_ops.out, "2\n");
  // An env's config versions name the env, in psql and in `platform events`, not only its id.
  auto named = run(dev.psql("SELECT DISTINCT resource_kind || ' ' || resource_name FROM audit.events"
                            " WHERE type = 'ConfigVersionCreated'"));
  EXPECT_EQ(named.out, "env prod\n");
  auto cfg_rows = cli("events --org dev --type ConfigVersionCreated");
  ASSERT_EQ(cfg_rows.exit, 0) << cfg_rows.out;
  EXPECT_NE(cfg_rows.out.find("env prod"), std::string::npos) << cfg_rows.out;

  // secrets: from stdin, a file and an import; no output, log or dump ever holds a value.
  const std::string secret = "s3cr3t-Pa55-" + new_id("x"), key_body = "AbC" + new_id("y"),
                    pem = "-----BEGIN KEY-----\n" + key_body + "\n";
  auto pem_file = dev.root() / "key.pem";
  std::ofstream(pem_file) << pem;
  auto env_file = dev.root() / "prod.env";
  std::ofstream(env_file) << "# imported\nIMPORTED=\"imp-" << secret << "\"\n";
  std::vector<std::string> outputs;
  auto sec = run("printf '%s' '" + secret + "' | " + PLATFORM_BIN + " -o json secrets set DB_PASSWORD=- TLS_KEY=@" +
                 pem_file.string() + at);
  ASSERT_EQ(sec.exit, 0) << sec.out;
  EXPECT_EQ(one_json(sec)["secrets_version"], 1);
  outputs.push_back(sec.out);
  outputs.push_back(cli("secrets set DB_PASSWORD=- " + at + " < /dev/null").out);  // a different (empty) value
  outputs.push_back(cli("secrets import " + env_file.string() + at).out);
  outputs.push_back(cli("secrets list" + at).out);
  auto listed_secrets = cli("-o json secrets list" + at);
  outputs.push_back(listed_secrets.out);
  EXPECT_EQ(one_json(listed_secrets)["secrets"].size(), 3u);
  // A release that delivers them: its receipt, description, diff and plan hold no value either.
  oci::RegistryClient registry;
  auto image = oci::parse_image_ref(dev.registry() + "/e2e/api:v1");
  harness::push_manifest(registry, image, "v1", oci::kOciManifest, harness::push_image(registry, image, "amd64", "l"));
  const auto manifest = (dev.root() / "api.toml").string();
  std::ofstream(manifest) << "schema_version = 1\n[app]\nname = \"api\"\n[processes.web]\n"
                             "[secrets]\nrequired = [\"DB_PASSWORD\", \"TLS_KEY\"]\n";
  auto deployed = cli("-o json deploy --image " + image.str() + " --manifest " + manifest + at);
  ASSERT_EQ(deployed.exit, 0) << deployed.out;
  outputs.push_back(deployed.out);
  outputs.push_back(cli("deploy --manifest " + manifest + at).out);
  outputs.push_back(cli("-o json releases describe v1" + at).out);
  outputs.push_back(cli("releases describe v1" + at).out);
  outputs.push_back(cli("-o json diff --manifest " + manifest + at).out);
  ASSERT_EQ(cli("-o json deploy --manifest " + manifest + " --plan " + (dev.root() / "plan.json").string() + at).exit, 0);
  outputs.push_back(slurp(dev.root() / "plan.json"));
  outputs.push_back(cli("-o json events --org dev").out);
  outputs.push_back(cli("secrets set 'BAD NAME=" + secret + "'" + at).out);
  auto mistyped = cli("-o json secrets set '" + secret + "'" + at);  // the value alone, '=' forgotten
  EXPECT_EQ(mistyped.exit, 2);
  outputs.push_back(mistyped.out);
  for (const auto& o : outputs) {
    EXPECT_EQ(o.find(secret), std::string::npos) << o;
    // The key's body, whole: a short piece of it could turn up by chance in a base64 ciphertext.
    EXPECT_EQ(o.find(key_body), std::string::npos) << o;
  }
  auto dump = run("pg_dump --data-only '" + dev.conninfo() + "'").out;
  ASSERT_GT(dump.size(), 1000u);
  std::string logs = run("cat " + (dev.root() / "state/platformd.log").string() + " " +
                         (dev.root() / "state/postgres.log").string() + " " + (dev.root() / "dev.log").string()).out;
  EXPECT_NE(logs.find("api listening"), std::string::npos);  // the server's log was read
  for (const auto& where : {dump, logs}) {
    EXPECT_EQ(where.find(secret), std::string::npos);
    EXPECT_EQ(where.find(key_body), std::string::npos);
  }

  // platformd dev runs one agent: its host is enrolled and up, and only an operator sees it.
  Json hosts;
  for (int i = 0; i < 100; ++i) {
    hosts = one_json(cli("-o json host list"));
    if (hosts["count"] == 1 && hosts["hosts"][0]["state"] == "up") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(hosts["count"], 1) << hosts.dump();
  EXPECT_EQ(hosts["hosts"][0]["name"], "dev");
  EXPECT_EQ(hosts["hosts"][0]["state"], "up");
  const auto host_id = hosts["hosts"][0]["id"].get<std::string>();
  EXPECT_EQ(one_json(cli("-o json host describe dev"))["events"].back()["type"], "HostEnrolled");
  auto joined = one_json(cli("-o json host join-token --ttl 5m"));
  EXPECT_EQ(joined["token"].get<std::string>().rfind("pjt_", 0), 0u);
  EXPECT_EQ(cli("-o json host describe nope").exit, 7);

  // Restart on the same state folder: postgres stops with it, and the data is kept.
  EXPECT_TRUE(dev.stop());
  dev.start();
  auto apps = one_json(cli("-o json app list --org dev --project shop"));
  EXPECT_EQ(apps["count"], 2);
  auto listed = one_json(cli("-o json config list" + at));
  EXPECT_EQ(listed["version"], 2);
  // The agent came back with its identity: still one host, the same one.
  for (int i = 0; i < 100 && one_json(cli("-o json host list"))["hosts"][0]["seconds_since_heartbeat"] > 3.0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto after = one_json(cli("-o json host list"));
  EXPECT_EQ(after["count"], 1);
  EXPECT_EQ(after["hosts"][0]["id"], host_id);
  EXPECT_EQ(listed["values"]["LOG_LEVEL"]["value"], "debug");
  EXPECT_FALSE(listed["values"].contains("GREETING"));
  EXPECT_TRUE(dev.stop());
}


// The horizon through the CLI: a transaction that drew the lower position commits after a later one;
// `platform events --follow` must neither show the later event early nor ever skip the earlier one.
// kill -9 of the dev PostgreSQL: platformd dev starts it again (crash recovery), the control plane's
// pooled connections that died with it are replaced without failing a request, and nothing recorded
// before the crash is lost.
TEST(EndToEnd, PostgresKilledIsRestartedAndKeepsEverything) {
  DevPlatform dev;
  ASSERT_EQ(cli("-o json project create before-crash --org dev").exit, 0);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(cli("-o json project list --org dev").exit, 0);  // warm the pool
  // A follow and a wait that run through the outage ride it out (the API answers 503 meanwhile).
  const auto follow_log = dev.root() / "follow.log", wait_log = dev.root() / "wait.log";
  harness::Child follow({PLATFORM_BIN, "-o", "ndjson", "events", "--follow", "--org", "dev"}, follow_log.string());
  harness::Child waiting({PLATFORM_BIN, "wait", "project/after-crash", "--org", "dev", "--timeout", "120s"},
                         wait_log.string());
  for (int i = 0; i < 100 && slurp(follow_log).find("before-crash") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_NE(slurp(follow_log).find("before-crash"), std::string::npos) << slurp(follow_log);
  const auto pidfile = dev.root() / "state/postgres/postmaster.pid";
  const auto postmaster = std::stoi(slurp(pidfile));
  ASSERT_GT(postmaster, 1);
  ASSERT_EQ(::kill(postmaster, SIGKILL), 0);
  // platformd dev sees it die. (Until it does, a pooled connection whose backend outlived its postmaster
  // for a moment can still answer: "back" below would then be the old server.)
  bool seen = false;
  for (int i = 0; i < 100 && !seen; ++i) {
    seen = slurp(dev.root() / "dev.log").find("postgres exited unexpectedly; restarting it") != std::string::npos;
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(seen) << run("tail -20 " + (dev.root() / "dev.log").string()).out;
  // Back within the restart pause and crash recovery; until then the API answers 503 (exit 1).
  bool back = false;
  for (int i = 0; i < 300 && !back; ++i) {
    back = cli("-o json org list").exit == 0;
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(back) << run("tail -20 " + (dev.root() / "dev.log").string()).out;
  EXPECT_NE(std::stoi(slurp(pidfile)), postmaster);
  // Once it answers, every request does: no stale pooled connection fails one on the way.
  for (int i = 0; i < 10; ++i) {
    auto r = cli("-o json project list --org dev");
    ASSERT_EQ(r.exit, 0) << r.out;
    EXPECT_NE(r.out.find("before-crash"), std::string::npos);
  }
  auto after = cli("-o json project create after-crash --org dev");
  ASSERT_EQ(after.exit, 0) << after.out;
  const int waited = waiting.wait(std::chrono::seconds(30));
  EXPECT_TRUE(WIFEXITED(waited) && WEXITSTATUS(waited) == 0) << waited << ": " << slurp(wait_log);
  for (int i = 0; i < 100 && slurp(follow_log).find("after-crash") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_NE(slurp(follow_log).find("after-crash"), std::string::npos) << slurp(follow_log);
  EXPECT_EQ(run(dev.psql("SELECT count(*) FROM events WHERE type = 'ProjectCreated' AND data->>'name' IN "
                         "('before-crash', 'after-crash')")).out,
            "2\n");
  EXPECT_TRUE(dev.stop());
}

TEST(EndToEnd, EventsFollowNeverSkipsAnEventThatCommitsLate) {
  DevPlatform dev;
  auto org = run(dev.psql("SELECT id FROM core.resources WHERE kind = 'org' AND name = 'dev'")).out;
  ASSERT_FALSE(org.empty());
  org.pop_back();  // newline
  auto log = dev.root() / "follow.log";
  harness::Child follow({PLATFORM_BIN, "-o", "ndjson", "events", "--follow", "--org", "dev"}, log.string());
  for (int i = 0; i < 100 && slurp(log).find("OrgCreated") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_NE(slurp(log).find("OrgCreated"), std::string::npos) << slurp(log);

  auto event = [&](const std::string& type) {
    return events::NewEvent{uuid_to_string(new_uuid_v7()), type, 1, Json::object(),
                            Json{{"actor", "usr_test"}, {"org_id", org}}};
  };
  pqxx::connection slow_conn(dev.conninfo()), fast_conn(dev.conninfo());
  pqxx::work slow(slow_conn);
  events::append(slow, "horizon-slow", std::nullopt, {event("HorizonSlow")});  // lower position, still open
  {
    pqxx::work fast(fast_conn);
    events::append(fast, "horizon-fast", std::nullopt, {event("HorizonFast")});
    fast.commit();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // longer than every reader's poll
  EXPECT_EQ(slurp(log).find("HorizonFast"), std::string::npos) << "shown before the earlier transaction ended";
  slow.commit();
  for (int i = 0; i < 100 && slurp(log).find("HorizonFast") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto out = slurp(log);
  auto s = out.find("HorizonSlow"), f = out.find("HorizonFast");
  ASSERT_NE(s, std::string::npos) << out;
  ASSERT_NE(f, std::string::npos) << out;
  EXPECT_LT(s, f) << "the follower must show events in cursor order";
  EXPECT_EQ(out.find("HorizonSlow", s + 1), std::string::npos) << "shown twice";
  EXPECT_EQ(out.find("HorizonFast", f + 1), std::string::npos) << "shown twice";
  follow.signal(SIGTERM);
  follow.wait();
  EXPECT_TRUE(dev.stop());
}

// Completion is generated from the command tree; flag values (`--context x`) do not derail it.
TEST(EndToEnd, ShellCompletionFollowsTheCommandTree) {
  auto complete = [](const std::string& words, int cword) {
    return run(std::string("bash -c 'source <(") + PLATFORM_BIN + " completion bash); COMP_WORDS=(" + words +
               "); COMP_CWORD=" + std::to_string(cword) + "; _platform; echo \"${COMPREPLY[@]}\"'")
        .out;
  };
  EXPECT_EQ(complete("platform org des", 2), "describe\n");
  EXPECT_EQ(complete("platform --context x project list --org dev --de", 7), "--deleted\n");
  EXPECT_NE(complete("platform \"\"", 1).find("events"), std::string::npos);
  auto zsh = cli("completion zsh");
  EXPECT_EQ(zsh.exit, 0);
  EXPECT_NE(zsh.out.find("bashcompinit"), std::string::npos);
  EXPECT_EQ(cli("completion fish").exit, 2);
}

// Two platforms on one machine (two e2e tests at once) never get the same address pools, even when
// their ports would give the same number; a number is free again once its platform is gone.
TEST(EndToEnd, TwoPlatformsNeverShareAddressPools) {
  std::optional<NetSlot> a(std::in_place, 7);
  NetSlot b(7);
  EXPECT_NE(a->number(), b.number());
  const int held = a->number();
  a.reset();
  NetSlot c(held);
  EXPECT_EQ(c.number(), held);
}

// A second `platformd dev` with the pools of one that runs is refused before it starts or creates
// anything (exit 6), naming the pool: sharing them would give both the same addresses.
TEST(EndToEnd, ASecondDevWithTheSamePoolsIsRefused) {
  DevPlatform dev;
  const auto other = dev.root() / "second-state";
  auto second = run("{ " + std::string(PLATFORMD_BIN) + " dev --state " + other.string() + " --api-port " +
                    std::to_string(dev::free_loopback_port(20000, 26000)) + " --ipv6-pool " + dev.ipv6_pool() +
                    " --ipv4-pool " + dev.ipv4_pool() + " --instance-pool " + dev.instance_pool() + " 2>&1; }");
  EXPECT_EQ(second.exit, 6) << second.out;
  EXPECT_NE(second.out.find("another platformd dev on this machine uses the address pool " + dev.ipv6_pool()),
            std::string::npos)
      << second.out;
  EXPECT_FALSE(std::filesystem::exists(other));
  EXPECT_EQ(cli("org list").exit, 0);  // the first one is untouched
  EXPECT_TRUE(dev.stop());
}

// Usage errors (exit 2, one JSON document with -o json) name the command the words reached, point at
// that command's help, suggest the closest command or option for a misspelt one, and name a missing
// argument.
TEST(EndToEnd, UsageErrorsNameTheCommandAndTheClosestOne) {
  auto hint_of = [](const std::string& args) {
    auto r = cli("-o json " + args);
    EXPECT_EQ(r.exit, 2) << args << ": " << r.out;
    return one_json(r)["error"];
  };
  auto e = hint_of("evnts");
  EXPECT_EQ(e["message"], "`platform` has no command \"evnts\"");
  EXPECT_EQ(e["hint"], "Did you mean `platform events`? See `platform --help`.");
  e = hint_of("endpoint creat --port 1");
  EXPECT_EQ(e["hint"], "Did you mean `platform endpoint create`? See `platform endpoint --help`.");
  e = hint_of("org describe");  // a missing argument: which one, and what it takes
  EXPECT_EQ(e["message"], "`platform org describe` is missing NAME: Name or ID");
  EXPECT_EQ(e["hint"], "See `platform org describe --help`.");
  EXPECT_EQ(hint_of("org create")["message"], "`platform org create` is missing NAME: a-z, 0-9 and '-', starting with a letter");
  EXPECT_EQ(hint_of("ip")["message"], "`platform ip` needs one of its commands: list, allocate-v4, release");
  EXPECT_EQ(hint_of("app create a b")["hint"], "See `platform app create --help`.");
  e = hint_of("status --projetc shop");  // an option the command lacks, global ones included
  EXPECT_EQ(e["message"], "`platform status` has no option --projetc");
  EXPECT_EQ(e["hint"], "Did you mean --project? See `platform status --help`.");
  EXPECT_EQ(hint_of("endpoint create web --prot=80")["hint"], "Did you mean --port? See `platform endpoint create --help`.");
  EXPECT_EQ(hint_of("org list -x")["hint"], "See `platform org list --help`.");
}

// An empty table says where it looked and what makes the first row (on stderr: stdout stays the table).
TEST(EndToEnd, EmptyListsSayWhereTheyLookedAndWhatToDo) {
  DevPlatform dev;
  ASSERT_EQ(cli("project create hollow --org dev").exit, 0);
  auto both = [](const std::string& args) { return run("{ " + std::string(PLATFORM_BIN) + " " + args + " 2>&1; }"); };
  auto apps = both("app list --project hollow --org dev");
  EXPECT_EQ(apps.exit, 0);
  EXPECT_NE(apps.out.find("No apps in project hollow yet; create one with `platform app create NAME --project hollow`."),
            std::string::npos) << apps.out;
  EXPECT_EQ(cli("app list --project hollow --org dev").out, "NAME  ID  STATE  CREATED  BY\n");
  EXPECT_EQ(cli("-o json app list --project hollow --org dev").exit, 0);
  auto events = both("events --type NoSuchType --org dev");
  EXPECT_EQ(events.exit, 0);
  EXPECT_NE(events.out.find("No events match --type NoSuchType"), std::string::npos) << events.out;
  ASSERT_EQ(cli("app create api --project hollow --org dev").exit, 0);
  ASSERT_EQ(cli("env create prod --project hollow --app api --org dev").exit, 0);
  auto env = cli("env describe prod --project hollow --app api --org dev");
  EXPECT_NE(env.out.find("Status:  platform status --project hollow --app api --env prod"), std::string::npos) << env.out;
  EXPECT_TRUE(dev.stop());  // the next test's platformd dev takes the same state folder
}

// The manifest commands work offline: exit codes 0, 2 and 10, one JSON document with -o json, and
// explain's output is a manifest that validates again.
TEST(EndToEnd, ManifestValidateAndExplainFromTheCli) {
  const std::string corpus = MANIFEST_CORPUS;
  auto ok = cli("manifest validate " + corpus + "/valid/full.toml -o json");
  EXPECT_EQ(ok.exit, 0);
  EXPECT_EQ(one_json(ok)["manifest"]["processes"]["web"]["memory"], "512MiB");

  auto bad = cli("manifest validate " + corpus + "/invalid/unknown_keys.toml -o json");
  EXPECT_EQ(bad.exit, 2);
  auto err = one_json(bad)["error"];
  EXPECT_EQ(err["code"], "invalid_request");
  ASSERT_EQ(err["details"].size(), 6u);
  EXPECT_EQ(err["details"][2]["line"], 9);
  EXPECT_EQ(err["details"][2]["message"], "unknown key \"comand\" in [processes.web] (did you mean \"command\"?)");

  auto deferred = cli("manifest validate " + corpus + "/invalid/deferred_only.toml -o json");
  EXPECT_EQ(deferred.exit, 10);
  EXPECT_EQ(one_json(deferred)["error"]["code"], "not_supported");

  EXPECT_EQ(cli("manifest validate /nonexistent/platform.toml").exit, 2);

  auto dir = harness::PgEnvironment::get().root() / "manifest-e2e";
  std::filesystem::create_directories(dir);
  auto explained = cli("manifest explain " + corpus + "/valid/checks_and_restarts.toml --env production");
  ASSERT_EQ(explained.exit, 0);
  std::ofstream(dir / "explained.toml") << explained.out;
  auto again = cli("manifest validate " + (dir / "explained.toml").string() + " -o json");
  ASSERT_EQ(again.exit, 0) << explained.out;
  EXPECT_EQ(one_json(again)["manifest"]["processes"]["api"]["count"], 6);
}

// The dev registry takes the sample images pushed by the project's own script, and serves them by tag and
// by digest with the OCI media types.
TEST(EndToEnd, SampleImagesPushToTheDevRegistryAndDeploy) {
  DevPlatform dev;
  auto pushed = run(std::string("SAMPLE_ECHO=") + SAMPLE_ECHO_BIN + " " + SOURCE_DIR + "/scripts/sample-image " +
                    dev.registry());
  ASSERT_EQ(pushed.exit, 0) << pushed.out;
  std::istringstream lines(pushed.out);
  std::map<std::string, std::string> digests;
  std::string ref, digest;
  while (lines >> ref >> digest) digests[ref] = digest;
  ASSERT_EQ(digests.size(), 3u) << pushed.out;
  for (const auto& [r, d] : digests) {
    EXPECT_EQ(d.rfind("sha256:", 0), 0u) << r;
    EXPECT_EQ(d.size(), 71u) << r;
  }
  auto v1 = digests.at(dev.registry() + "/sample/echo:v1");
  EXPECT_NE(v1, digests.at(dev.registry() + "/sample/echo:v2"));
  const std::string accept = " -H 'Accept: application/vnd.oci.image.manifest.v1+json' ";
  auto by_digest = run("curl -fsS" + accept + "http://" + dev.registry() + "/v2/sample/echo/manifests/" + v1);
  ASSERT_EQ(by_digest.exit, 0);
  auto manifest = Json::parse(by_digest.out);
  EXPECT_EQ(manifest["layers"].size(), 1u);
  auto config = Json::parse(run("curl -fsS http://" + dev.registry() + "/v2/sample/echo/blobs/" +
                                manifest["config"]["digest"].get<std::string>()).out);
  EXPECT_EQ(config["config"]["Entrypoint"], Json::array({"/app/echo"}));
  EXPECT_EQ(config["architecture"], "amd64");
  EXPECT_EQ(run("curl -fsS -o /dev/null" + accept + "http://" + dev.registry() + "/v2/sample/echo/manifests/nope").exit, 22);

  // Deploy by tag, diff, deploy again, roll back: all from the CLI, each answer one JSON document.
  ASSERT_EQ(cli("project create samples --org dev").exit, 0);
  ASSERT_EQ(cli("app create echo --org dev --project samples").exit, 0);
  ASSERT_EQ(cli("env create prod --org dev --project samples --app echo").exit, 0);
  const std::string at = " --org dev --project samples --app echo --env prod";
  const std::string m = " --manifest " + std::string(SOURCE_DIR) + "/samples/echo/platform.toml";
  const auto image = [&](const std::string& tag) { return " --image " + dev.registry() + "/sample/echo:" + tag; };
  auto d1 = cli("-o json deploy" + image("v1") + m + at);
  ASSERT_EQ(d1.exit, 0) << d1.out;
  auto r1 = one_json(d1);
  EXPECT_EQ(r1["release"]["number"], 1);
  EXPECT_EQ(r1["release"]["image_digest"], v1);
  EXPECT_EQ(r1["status"], "succeeded");

  auto diff = cli("-o json diff" + image("v2") + m + at);
  EXPECT_EQ(diff.exit, 3) << diff.out;
  auto dj = one_json(diff);
  EXPECT_TRUE(dj["changed"].get<bool>());
  ASSERT_EQ(dj["diff"].size(), 1u) << dj["diff"].dump();
  EXPECT_EQ(dj["diff"][0]["kind"], "image");
  auto same = cli("-o json diff" + m + at);
  EXPECT_EQ(same.exit, 0) << same.out;
  EXPECT_FALSE(one_json(same)["changed"].get<bool>());

  auto d2 = one_json(cli("-o json deploy" + image("v2") + m + at));
  EXPECT_EQ(d2["release"]["number"], 2);
  EXPECT_EQ(d2["release"]["image_digest"], digests.at(dev.registry() + "/sample/echo:v2"));
  auto again = cli("-o json deploy" + image("v2") + m + at);
  EXPECT_EQ(again.exit, 0);
  EXPECT_TRUE(one_json(again)["duplicate"].get<bool>());

  auto rb = cli("-o json rollback" + at);
  ASSERT_EQ(rb.exit, 0) << rb.out;
  EXPECT_EQ(one_json(rb)["release"]["id"], r1["release"]["id"]);
  auto list = one_json(cli("-o json releases list" + at));
  ASSERT_EQ(list["releases"].size(), 2u);
  EXPECT_EQ(list["current_release_id"], r1["release"]["id"]);
  auto described = one_json(cli("-o json releases describe v1" + at));
  EXPECT_EQ(described["image_digest"], v1);
  EXPECT_EQ(described["history"].size(), 2u);

  // What changed between two releases: v2 against the one before it, and any pair; exit 3 when they differ.
  auto rdiff = cli("-o json releases diff v2" + at);
  EXPECT_EQ(rdiff.exit, 3) << rdiff.out;
  auto rd = one_json(rdiff);
  EXPECT_EQ(rd["from"]["name"], "v1");
  EXPECT_EQ(rd["to"]["id"], d2["release"]["id"]);
  ASSERT_EQ(rd["changes"].size(), 1u) << rd.dump();
  EXPECT_EQ(rd["changes"][0]["kind"], "image");
  EXPECT_EQ(rd["changes"][0]["to"], digests.at(dev.registry() + "/sample/echo:v2"));
  auto back = one_json(cli("-o json releases diff v2 v1" + at));
  EXPECT_EQ(back["changes"][0]["to"], v1);
  EXPECT_EQ(cli("releases diff v1 v1" + at).exit, 0);
  auto first = one_json(cli("-o json releases diff v1" + at));
  EXPECT_TRUE(first["from"].is_null());
  EXPECT_GE(first["changes"].size(), 2u);  // the image and the process: everything is added
  EXPECT_EQ(cli("releases diff v9" + at).exit, 7);
  EXPECT_EQ(one_json(cli("-o json releases diff" + at))["to"]["id"], r1["release"]["id"]);  // the current: v1
  ASSERT_EQ(cli("env create empty --org dev --project samples --app echo").exit, 0);
  EXPECT_EQ(cli("releases diff --org dev --project samples --app echo --env empty").exit, 7);

  // A plan, applied from its file alone; then stale.
  const auto plan = (dev.root() / "plan.json").string();
  auto planned = cli("-o json deploy" + image("v2") + m + " --plan " + plan + at);
  ASSERT_EQ(planned.exit, 0) << planned.out;
  EXPECT_TRUE(one_json(planned)["changed"].get<bool>());
  auto applied = cli("-o json deploy --apply " + plan + " --org dev");
  ASSERT_EQ(applied.exit, 0) << applied.out;
  EXPECT_EQ(one_json(applied)["release"]["id"], d2["release"]["id"]);  // the same content: the same release
  auto stale = cli("-o json deploy --apply " + plan + " --org dev");
  EXPECT_EQ(stale.exit, 6);
  EXPECT_EQ(one_json(stale)["error"]["code"], "precondition_failed");

  // Failures are one JSON error with the documented exit code.
  auto missing = cli("-o json deploy" + image("nope") + m + at);
  EXPECT_EQ(missing.exit, 7);
  EXPECT_EQ(one_json(missing)["error"]["code"], "not_found");
  const auto gated = (dev.root() / "gated.toml").string();
  std::ofstream(gated) << "schema_version = 1\n[app]\nname = \"echo\"\n[processes.web]\n"
                          "[secrets]\nrequired = [\"API_KEY\"]\n";
  auto refused = cli("-o json deploy --manifest " + gated + at);
  EXPECT_EQ(refused.exit, 6);
  EXPECT_EQ(one_json(refused)["error"]["details"].size(), 1u);
  ASSERT_EQ(run("printf k | " + std::string(PLATFORM_BIN) + " secrets set API_KEY=-" + at).exit, 0);
  auto allowed = cli("-o json deploy --manifest " + gated + at);
  EXPECT_EQ(allowed.exit, 0) << allowed.out;
  EXPECT_EQ(one_json(allowed)["secrets_version"], 1);

  // The checks stop() makes for a leftover registry and agent do see running ones.
  EXPECT_FALSE(run("pgrep -f '[d]ocker-registry serve " + (dev.root() / "state/registry").string() + "'").out.empty());
  EXPECT_FALSE(run("pgrep -f '[p]latform-agent .*--state " + (dev.root() / "state/agent").string() + "'").out.empty());
  EXPECT_TRUE(dev.stop());
}


// The quick start's sample app (scripts/dev runs scripts/deploy-sample on every start): deployed and
// healthy on the first run, left as it is on the next.
TEST(EndToEnd, TheQuickStartDeploysTheSampleAppOnce) {
  if (!can_run_sandboxes()) GTEST_SKIP() << "needs root and runc (/usr/sbin/runc) to run sandboxes";
  DevPlatform dev;
  const auto deploy_sample = std::string("PLATFORM=") + PLATFORM_BIN + " SAMPLE_ECHO=" + SAMPLE_ECHO_BIN + " " +
                             SOURCE_DIR + "/scripts/deploy-sample " + dev.registry();
  auto first = run(deploy_sample);
  ASSERT_EQ(first.exit, 0) << first.out;
  EXPECT_NE(first.out.find("the sample app runs"), std::string::npos) << first.out;
  auto st = one_json(cli("-o json status --project sample --app echo --env dev"));
  EXPECT_EQ(st["phase"], "converged") << st.dump();
  int healthy = 0;
  for (const auto& i : st["instances"]) healthy += i["process"] == "web" && i["health"] == "healthy";
  EXPECT_EQ(healthy, 2) << st.dump();
  auto again = run(deploy_sample);
  EXPECT_EQ(again.exit, 0) << again.out;
  EXPECT_NE(again.out.find("deployed already"), std::string::npos) << again.out;
  EXPECT_EQ(one_json(cli("-o json releases list --project sample --app echo --env dev"))["releases"].size(), 1u);

  // env list says what each env runs: its release, live instances (how many serve) and addresses.
  const auto envs = one_json(cli("-o json env list --project sample --app echo"));
  ASSERT_EQ(envs["items"].size(), 1u) << envs.dump();
  const auto runtime = envs["items"][0]["runtime"];
  EXPECT_EQ(runtime["release"]["name"], "v1") << envs.dump();
  EXPECT_EQ(runtime["instances"], 2) << envs.dump();
  EXPECT_EQ(runtime["serving"], 2) << envs.dump();
  EXPECT_EQ(runtime["addresses"].size(), 1u) << envs.dump();
  EXPECT_NE(cli("env list --project sample --app echo").out.find("2 (2 serving)"), std::string::npos);
  EXPECT_EQ(one_json(cli("-o json env describe dev --project sample --app echo"))["runtime"], runtime);  // describe too

  // doctor, once the sample runs and its edge serves it (deploy-sample waits for both): every check ok.
  const auto doctor = one_json(cli("-o json doctor --project sample --app echo --env dev"));
  EXPECT_EQ(doctor["ok"], true) << doctor.dump();
  for (const auto& c : doctor["checks"]) EXPECT_EQ(c["result"], "ok") << c.dump();

  // `platform describe` takes KIND/NAME or an ID alone, and prints what the noun's describe prints.
  const std::string at = " --project sample --app echo --env dev";
  const auto ins = st["instances"][0];
  const auto ins_id = ins["id"].get<std::string>(), ins_name = ins["name"].get<std::string>();
  EXPECT_EQ(cli("describe " + ins_id).out, cli("instance describe " + ins_name + at).out);  // no env flags needed
  EXPECT_EQ(one_json(cli("-o json describe instance/" + ins_name + at))["id"], ins_id);
  const auto rel = one_json(cli("-o json releases describe v1" + at));
  EXPECT_EQ(cli("describe " + rel["id"].get<std::string>()).out, cli("releases describe v1" + at).out);
  auto ep = one_json(cli("-o json endpoint list" + at))["endpoints"][0];
  EXPECT_EQ(cli("describe " + ep["id"].get<std::string>()).out, cli("endpoint describe " + ep["name"].get<std::string>() + at).out);
  EXPECT_EQ(one_json(cli("-o json describe app/echo --project sample"))["kind"], "app");
  const auto op = rel["operation_id"].get<std::string>();
  EXPECT_EQ(one_json(cli("-o json describe " + op))["id"], op);
  // An instance's and a release's events, by KIND/NAME or the noun's verb: theirs alone.
  const auto ins_events = one_json(cli("-o json instance events " + ins_name + at));
  ASSERT_FALSE(ins_events["events"].empty());
  for (const auto& e : ins_events["events"]) EXPECT_EQ(e["metadata"]["resource_id"], ins_id) << e.dump();
  EXPECT_EQ(one_json(cli("-o json events --resource instance/" + ins_name + at))["events"], ins_events["events"]);
  const auto rel_events = one_json(cli("-o json releases events v1" + at));
  ASSERT_FALSE(rel_events["events"].empty());
  EXPECT_EQ(rel_events["events"][0]["type"], "ReleaseCreated");
  EXPECT_EQ(cli("-o json events --resource instance/web-99" + at).exit, 7);
  auto bare = cli("-o json describe " + ins_name + at);
  EXPECT_EQ(bare.exit, 2);
  EXPECT_EQ(one_json(bare)["error"]["hint"].get<std::string>().rfind("Say what it is, e.g. `platform describe instance/" +
                                                                         ins_name + at + "`",
                                                                     0),
            0u)
      << bare.out;
  EXPECT_EQ(cli("-o json describe ins_01m96z44hmea985w0twkqhy8wm").exit, 7);  // no such instance in the org
  EXPECT_EQ(one_json(cli("-o json describe instnace/" + ins_name + at))["error"]["hint"].get<std::string>().rfind(
                "Did you mean instance/" + ins_name + "?", 0),
            0u);

  // `platform exec`: the command runs in the instance (its user, its workdir, its env plus --var), its
  // output comes back, and its exit status is the CLI's.
  auto shown = cli("exec " + ins_name + at + " --var ECHO_SHOW=1 -- /app/echo");
  EXPECT_EQ(shown.exit, 0) << shown.out;
  EXPECT_NE(shown.out.find("echo: uid=65534 gid=65534 cwd=/app"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("instance=" + ins_id), std::string::npos) << shown.out;
  EXPECT_EQ(cli("exec " + ins_name + at + " -e ECHO_EXIT=3 -- /app/echo").exit, 3);
  EXPECT_EQ(cli("exec " + ins_name + at + " -e ECHO_EXIT=4 /app/echo").exit, 4);  // --var takes one word: no -- needed
  auto by_process = one_json(cli("-o json exec web" + at + " -e ECHO_EXIT=0 -- /app/echo"));  // a running web one
  EXPECT_EQ(by_process["instance"].get<std::string>().rfind("web-", 0), 0u) << by_process.dump();
  auto exec_json = cli("-o json exec " + ins_id + at + " -e ECHO_EXIT=5 -- /app/echo");
  EXPECT_EQ(exec_json.exit, 5);
  auto ej = one_json(exec_json);
  EXPECT_EQ(ej["exit_code"], 5);
  EXPECT_EQ(ej["instance"], ins_name);
  EXPECT_EQ(base64_decode(ej["output"].get<std::string>()).value_or(""), "echo: exiting with status 5 (ECHO_EXIT)\n");
  // --stdin: the command reads what the CLI read, byte for byte (400 KiB: more than a pipe holds at once).
  const auto input = (dev.root() / "exec-input").string(), copied = (dev.root() / "exec-output").string();
  ASSERT_EQ(run("head -c 409600 /dev/urandom > " + input).exit, 0);
  auto cat = run(std::string(PLATFORM_BIN) + " exec " + ins_name + at + " --stdin -e ECHO_CAT=1 -- /app/echo < " + input +
                 " > " + copied + " && head -c 409600 " + copied + " | cmp - " + input + " && tail -c 30 " + copied);
  EXPECT_EQ(cat.exit, 0) << cat.out;
  EXPECT_NE(cat.out.find("echo: 409600 bytes from stdin"), std::string::npos) << cat.out;
  auto no_input = cli("exec " + ins_name + at + " -e ECHO_CAT=1 -- /app/echo < /dev/zero");  // without --stdin: none
  EXPECT_EQ(no_input.out, "echo: 0 bytes from stdin\n");
  auto missing = cli("exec " + ins_name + at + " -- /app/nope -x");  // the command's own flags stay its own
  EXPECT_EQ(missing.exit, 127) << missing.out;  // as a shell says "not found"
  EXPECT_NE(missing.out.find("cannot run /app/nope: no such file or directory"), std::string::npos) << missing.out;
  auto slow = cli("-o json exec " + ins_name + at + " --timeout 1s -e PORT=8099 -- /app/echo");  // it serves: killed
  EXPECT_EQ(slow.exit, 4) << slow.out;
  EXPECT_EQ(one_json(slow)["timed_out"], true) << slow.out;  // one document: the result, which says so
  EXPECT_EQ(cli("-o json exec web-99" + at + " -- /app/echo").exit, 7);
  auto trail = one_json(cli("-o json events --type InstanceExec* --resource " + ins_id + " --org dev"));
  int requested = 0, finished = 0;
  for (const auto& e : trail["events"]) {
    if (e["type"] == "InstanceExecRequested") {
      ++requested;
      EXPECT_EQ(e["metadata"]["actor_name"], "admin") << e.dump();
    }
    finished += e["type"] == "InstanceExecFinished";
  }
  int by_process_here = by_process["instance_id"] == ins_id ? 1 : 0;
  EXPECT_EQ(requested, 8 + by_process_here) << trail.dump();  // web-99 is no instance: refused, nothing recorded
  EXPECT_EQ(finished, 8 + by_process_here) << trail.dump();

  // `platform exec -i`: a session. What the CLI reads streams to the command as it runs, its output
  // streams back, and its exit status is the CLI's; the end of stdin is the end of the command's input.
  const std::string bin = PLATFORM_BIN;
  auto piped = run("printf 'hello there\\nexit 6\\n' | " + bin + " exec -i " + ins_name + at + " -e ECHO_PROMPT=1 -- /app/echo");
  EXPECT_EQ(piped.exit, 6) << piped.out;
  EXPECT_NE(piped.out.find("echo: tty=no size=none"), std::string::npos) << piped.out;
  EXPECT_NE(piped.out.find("you said: hello there"), std::string::npos) << piped.out;
  auto to_end = run("printf 'one\\n' | " + bin + " exec -i " + ins_name + at + " -e ECHO_PROMPT=1 -- /app/echo");
  EXPECT_EQ(to_end.exit, 0) << to_end.out;
  EXPECT_NE(to_end.out.find("you said: one\n> bye"), std::string::npos) << to_end.out;
  // 300 KiB through a session, byte for byte (more than one chunk, more than a pipe holds).
  auto streamed = run(bin + " exec -i " + ins_name + at + " -e ECHO_CAT=1 -- /app/echo < " + input + " > " + copied +
                      " && head -c 409600 " + copied + " | cmp - " + input + " && tail -c 30 " + copied);
  EXPECT_EQ(streamed.exit, 0) << streamed.out;
  EXPECT_NE(streamed.out.find("echo: 409600 bytes from stdin"), std::string::npos) << streamed.out;

  // -it at a terminal: the command gets a terminal of the CLI's size, follows its resizes, sees the keys
  // as typed (the terminal echoes them), and its exit status is the CLI's.
  const std::vector<std::string> session_argv = {bin, "exec", "-it", ins_name, "--project", "sample", "--app", "echo",
                                                 "--env", "dev", "-e", "ECHO_PROMPT=1", "--", "/app/echo"};
  {
    PtyRun t(session_argv, 33, 101);
    ASSERT_TRUE(t.wait_for("> ", std::chrono::seconds(30))) << t.output();
    EXPECT_NE(t.output().find("echo: tty=yes size=33x101"), std::string::npos) << t.output();
    t.type("hi there\r");
    EXPECT_TRUE(t.wait_for("you said: hi there", std::chrono::seconds(10))) << t.output();
    t.resize(50, 132);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    t.type("size\r");
    EXPECT_TRUE(t.wait_for("size=50x132", std::chrono::seconds(10))) << t.output();
    t.type("exit 9\r");
    EXPECT_EQ(t.finish(std::chrono::seconds(20)), 9) << t.output();
  }
  {
    // Ctrl-C on a terminal is the command's: it is interrupted, not the CLI (which passes on its 130).
    PtyRun t(session_argv, 24, 80);
    ASSERT_TRUE(t.wait_for("> ", std::chrono::seconds(30))) << t.output();
    t.type("\x03");
    EXPECT_EQ(t.finish(std::chrono::seconds(20)), 130) << t.output();
  }
  {
    // Without a terminal session (-i), Ctrl-C ends the CLI, which ends the session: its command is killed.
    auto argv = session_argv;
    argv[2] = "-i";
    PtyRun t(argv, 24, 80);
    ASSERT_TRUE(t.wait_for("> ", std::chrono::seconds(30))) << t.output();
    t.type("\x03");
    EXPECT_EQ(t.finish(std::chrono::seconds(20)), 130) << t.output();
  }
  // What a session cannot be.
  EXPECT_EQ(cli("-o json exec -i " + ins_name + at + " -- /app/echo < /dev/null").exit, 2);
  auto no_terminal = run("(" + bin + " exec -t " + ins_name + at + " -- /app/echo < /dev/null 2>&1; echo \"exit $?\")");
  EXPECT_NE(no_terminal.out.find("exit 2"), std::string::npos) << no_terminal.out;
  EXPECT_NE(no_terminal.out.find("-t needs a terminal on stdin"), std::string::npos) << no_terminal.out;
  EXPECT_EQ(cli("exec -i --stdin " + ins_name + at + " -- /app/echo < /dev/null").exit, 2);
  auto not_there = cli("exec -i " + ins_name + at + " -- /app/nope < /dev/null");
  EXPECT_EQ(not_there.exit, 127);  // as a shell says "not found", and in its words, not runc's
  EXPECT_NE(not_there.out.find("cannot run /app/nope: no such file or directory"), std::string::npos) << not_there.out;
  EXPECT_EQ(not_there.out.find("runc"), std::string::npos) << not_there.out;
  EXPECT_EQ(not_there.out.find("exec failed"), std::string::npos) << not_there.out;
  {
    // On a terminal, too, the session says why its command never ran.
    auto argv = session_argv;
    argv.back() = "/app/nope";
    PtyRun t(argv, 24, 80);
    EXPECT_EQ(t.finish(std::chrono::seconds(30)), 127) << t.output();
    EXPECT_NE(t.output().find("cannot run /app/nope: no such file or directory"), std::string::npos) << t.output();
  }
  // The trail: who opened each session, and how each ended (the last: the client ended it).
  Json ended = Json::array();
  for (int i = 0; i < 100 && ended.size() < 8; ++i) {
    ended = Json::array();
    auto sessions = one_json(cli("-o json events --type InstanceSession* --resource " + ins_id + " --org dev"));
    for (const auto& e : sessions["events"])
      if (e["type"] == "InstanceSessionEnded") ended.push_back(e["data"]);
    if (ended.size() < 8) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(ended.size(), 8u) << ended.dump();  // the three refused above opened none
  std::multiset<std::string> reasons;
  for (const auto& d : ended) reasons.insert(d["reason"].get<std::string>());
  EXPECT_EQ(reasons.count("the session ended with status 6"), 1u) << ended.dump();
  EXPECT_EQ(reasons.count("the session ended with status 0"), 2u) << ended.dump();
  EXPECT_EQ(reasons.count("the session ended with status 9"), 1u) << ended.dump();
  EXPECT_EQ(reasons.count("the session ended with status 130"), 1u) << ended.dump();
  EXPECT_EQ(reasons.count("the session ended with status 127"), 2u) << ended.dump();  // /app/nope, twice
  int by_client = 0;
  for (const auto& r : reasons) by_client += r == "the session ended: the client ended it";
  EXPECT_EQ(by_client, 1) << ended.dump();
  EXPECT_TRUE(dev.stop());
}

// Issue 4's end-to-end story against platformd dev and its agent (runc sandboxes): deploy 2 web + 1
// worker and converge; scale up and down; a crashing image restarts with backoff and fails; a process
// past its memory limit is OOM; deploy B then roll back to A; kill -9 the agent mid-rollout.
TEST(EndToEnd, InstancesConvergeScaleRestartAndRollBack) {
  if (!can_run_sandboxes()) GTEST_SKIP() << "needs root and runc (/usr/sbin/runc) to run sandboxes";
  DevPlatform dev;
  auto pushed = run(std::string("SAMPLE_ECHO=") + SAMPLE_ECHO_BIN + " " + SOURCE_DIR + "/scripts/sample-image " +
                    dev.registry());
  ASSERT_EQ(pushed.exit, 0) << pushed.out;
  std::map<std::string, std::string> digests;
  {
    std::istringstream lines(pushed.out);
    std::string ref, digest;
    while (lines >> ref >> digest) digests[ref.substr(ref.rfind(':') + 1)] = digest;
  }
  ASSERT_EQ(cli("project create inst --org dev").exit, 0);
  ASSERT_EQ(cli("app create echo --org dev --project inst").exit, 0);
  for (const char* env : {"prod", "crash", "oom", "stubborn"})
    ASSERT_EQ(cli(std::string("env create ") + env + " --org dev --project inst --app echo").exit, 0);
  const auto manifest = (dev.root() / "instances.toml").string();
  std::ofstream(manifest) << harness::echo_manifest(2, R"([processes.web.restart]
backoff = "200ms"
max_attempts = 3
[processes.worker]
cpu = 0.1
memory = "64MiB"
count = 1
stop_timeout = "1s"
[config]
optional = ["ECHO_ALLOC_MIB", "ECHO_IGNORE_TERM"]
)");
  const auto in = [](const std::string& env) { return " --org dev --project inst --app echo --env " + env; };
  const auto image = [&](const std::string& tag) { return " --image " + dev.registry() + "/sample/echo:" + tag; };
  const std::string m = " --manifest " + manifest;

  // Deploy 2 web + 1 worker: converges, every instance healthy, of release v1.
  ASSERT_EQ(cli("-o json deploy" + image("v1") + m + in("prod")).exit, 0);
  const auto progress = dev.root() / "wait-progress.txt";
  auto w = run("sh -c '" + std::string(PLATFORM_BIN) + " -o json wait --timeout 120s" + in("prod") + " 2>" +
               progress.string() + "'");
  ASSERT_EQ(w.exit, 0) << w.out << run("tail -30 " + (dev.root() / "state/agent.log").string()).out;
  // While it waited, stderr said where the rollout stood (stdout holds only the JSON document).
  const auto said = run("cat " + progress.string()).out;
  EXPECT_NE(said.find(" of 2 healthy"), std::string::npos) << said;
  EXPECT_NE(said.find("worker "), std::string::npos) << said;
  auto st = one_json(w);
  EXPECT_TRUE(st["converged"].get<bool>());
  EXPECT_EQ(instance_releases(st, "web"), (std::multiset<std::string>{"v1", "v1"}));
  EXPECT_EQ(instance_releases(st, "worker"), (std::multiset<std::string>{"v1"}));
  for (const auto& i : st["instances"]) EXPECT_EQ(i["state"], "running") << i.dump();
  // psql sees the same instances.
  EXPECT_EQ(run(dev.psql("SELECT count(*) FROM audit.instances i JOIN core.instances c ON c.id = i.id WHERE c.env_id = '" +
                         st["env_id"].get<std::string>() + "' AND i.state = 'running'")).out,
            "3\n");

  // Logs: each web instance's own output (shipped every second), and the platform's events about it.
  std::set<std::string> listening;
  bool started_seen = false;
  std::string last_logs;
  for (int i = 0; i < 100 && (listening.size() < 2 || !started_seen); ++i) {
    auto logs = cli("-o json logs --process web" + in("prod"));
    ASSERT_EQ(logs.exit, 0) << logs.out;
    last_logs = logs.out;
    const auto page = one_json(logs);  // named: a range over a member of a temporary would dangle
    for (const auto& l : page["lines"]) {
      if (l["source"] == "app" && l["message"].get<std::string>().find("listening on port 8080") != std::string::npos)
        listening.insert(l["instance"].get<std::string>());
      started_seen |= l["source"] == "system" && l["message"].get<std::string>().rfind("InstanceStarted", 0) == 0;
    }
    if (listening.size() < 2 || !started_seen) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(listening.size(), 2u) << last_logs;
  EXPECT_TRUE(started_seen) << last_logs;
  auto ndjson = cli("-o ndjson logs --source system --process worker" + in("prod"));
  ASSERT_EQ(ndjson.exit, 0);
  std::istringstream nd(ndjson.out);
  int system_lines = 0;
  for (std::string line; std::getline(nd, line);) {
    auto l = Json::parse(line);
    EXPECT_EQ(l["source"], "system");
    EXPECT_EQ(l["process"], "worker");
    ++system_lines;
  }
  EXPECT_GE(system_lines, 2);  // placed, started
  EXPECT_EQ(cli("-o json logs --source nonsense" + in("prod")).exit, 2);
  // -n: only the newest lines (logs_test pins which; here the CLI asks and prints them). Read before
  // everything, so lines arriving in between land only in everything.
  const auto newest = one_json(cli("-o json logs -n 2 --process web" + in("prod")))["lines"];
  const auto everything = one_json(cli("-o json logs --process web" + in("prod")))["lines"];
  ASSERT_EQ(newest.size(), 2u);
  ASSERT_GE(everything.size(), 4u);
  for (const auto& l : newest) EXPECT_NE(std::find(everything.begin() + 2, everything.end(), l), everything.end()) << l;
  EXPECT_EQ(cli("-o json logs -n 0" + in("prod")).exit, 2);
  // A misspelt instance or process is not found (exit 7), never an empty page that looks like silence.
  auto typo = cli("-o json logs --instance web-99" + in("prod"));
  EXPECT_EQ(typo.exit, 7) << typo.out;
  EXPECT_NE(one_json(typo)["error"]["message"].get<std::string>().find("no instance web-99"), std::string::npos)
      << typo.out;
  EXPECT_EQ(cli("-o json logs --process wbe" + in("prod")).exit, 7);
  EXPECT_EQ(cli("-o json logs --instance web-1" + in("prod")).exit, 0);
  // ... the same as the instance's own verb (read first: a line that arrives in between is only in the second).
  const auto own = one_json(cli("-o json instance logs web-1 --source system" + in("prod")))["lines"];
  const auto filtered_logs = one_json(cli("-o json logs --instance web-1 --source system" + in("prod")))["lines"];
  ASSERT_FALSE(own.empty());
  ASSERT_GE(filtered_logs.size(), own.size());
  EXPECT_TRUE(std::equal(own.begin(), own.end(), filtered_logs.begin())) << own.dump() << filtered_logs.dump();
  EXPECT_EQ(cli("-o json instance logs web-99" + in("prod")).exit, 7);

  // Scale up, then down: the stopped ones are named with why.
  // Waiting on the scale's operation waits for its rollout too: the answer carries the converged status.
  auto up = cli("-o json scale web=3" + in("prod"));
  ASSERT_EQ(up.exit, 0) << up.out;
  auto up_waited = cli("-o json wait " + one_json(up)["operation_id"].get<std::string>() + " --timeout 90s");
  ASSERT_EQ(up_waited.exit, 0) << up_waited.out;
  EXPECT_EQ(one_json(up_waited)["status"], "succeeded");
  EXPECT_EQ(one_json(up_waited)["rollout"]["phase"], "converged") << up_waited.out;
  st = one_json(cli("-o json status" + in("prod")));
  EXPECT_EQ(instance_releases(st, "web").size(), 3u);
  auto down = cli("-o json scale web=1 --wait --timeout 90s" + in("prod"));  // the receipt, then its rollout
  ASSERT_EQ(down.exit, 0) << down.out;
  EXPECT_EQ(one_json(down)["diff"][0]["summary"], "web count 3 -> 1");
  EXPECT_EQ(one_json(down)["rollout"]["phase"], "converged") << down.out;
  st = one_json(cli("-o json status" + in("prod")));
  EXPECT_EQ(instance_releases(st, "web").size(), 1u);
  auto stops = run(dev.psql("SELECT count(*) FROM events WHERE type = 'InstanceStopRequested'"
                            " AND data->>'reason' = 'scaled web to 1'"));
  EXPECT_EQ(stops.out, "2\n");
  auto all = one_json(cli("-o json instance list --all" + in("prod")));
  int stopped = 0;
  for (const auto& i : all["instances"]) stopped += i["state"] == "stopped" ? 1 : 0;
  EXPECT_EQ(stopped, 2);

  // More memory than any host has: unschedulable, said in words (wait exits 5); the old size keeps
  // serving meanwhile; scaling back converges again.
  ASSERT_EQ(cli("-o json scale web --memory 200000" + in("prod")).exit, 0);
  auto unplaceable = cli("-o json wait --timeout 60s" + in("prod"));
  EXPECT_EQ(unplaceable.exit, 5) << unplaceable.out;
  const auto why = one_json(unplaceable)["error"]["message"].get<std::string>();
  EXPECT_NE(why.find("needs 200000 MiB"), std::string::npos) << why;
  EXPECT_NE(why.find("dev has"), std::string::npos) << why;
  st = one_json(cli("-o json status" + in("prod")));
  EXPECT_EQ(st["phase"], "unschedulable");
  int serving = 0;
  for (const auto& i : st["instances"]) serving += i["process"] == "web" && i["health"] == "healthy";
  EXPECT_EQ(serving, 1) << st.dump();
  ASSERT_EQ(cli("-o json scale web --memory 96" + in("prod")).exit, 0);
  ASSERT_EQ(cli("-o json wait --timeout 90s" + in("prod")).exit, 0);
  st = one_json(cli("-o json status" + in("prod")));
  for (const auto& i : st["instances"]) {
    if (i["process"] == "web" && i["desired"] == "run") {
      EXPECT_EQ(i["memory_mib"], 96) << i.dump();
    }
  }

  // A rolling restart: every web instance is replaced by a new one, and --wait returns once they serve.
  std::set<std::string> before_restart, after_restart;
  for (const auto& i : st["instances"])
    if (i["process"] == "web" && i["desired"] == "run") before_restart.insert(i["id"].get<std::string>());
  auto restarted = cli("-o json restart web --wait --timeout 90s" + in("prod"));
  ASSERT_EQ(restarted.exit, 0) << restarted.out;
  EXPECT_EQ(one_json(restarted)["diff"][0]["instances"], static_cast<int>(before_restart.size())) << restarted.out;
  st = one_json(cli("-o json status" + in("prod")));
  for (const auto& i : st["instances"])
    if (i["process"] == "web" && i["desired"] == "run") after_restart.insert(i["id"].get<std::string>());
  EXPECT_EQ(after_restart.size(), before_restart.size());
  for (const auto& id : after_restart) EXPECT_FALSE(before_restart.count(id)) << id << " was not replaced";
  EXPECT_EQ(cli("restart nope" + in("prod")).exit, 2);
  // One instance alone: replaced, the others untouched.
  const auto one = *after_restart.begin();
  auto one_restarted = cli("instance restart " + one + " --wait --timeout 90s" + in("prod"));
  ASSERT_EQ(one_restarted.exit, 0) << one_restarted.out;
  st = one_json(cli("-o json status" + in("prod")));
  std::set<std::string> after_one;
  for (const auto& i : st["instances"])
    if (i["process"] == "web" && i["desired"] == "run") after_one.insert(i["id"].get<std::string>());
  EXPECT_EQ(after_one.size(), after_restart.size());
  EXPECT_FALSE(after_one.count(one));
  for (const auto& id : after_restart)
    if (id != one) {
      EXPECT_TRUE(after_one.count(id)) << id << " was replaced too";
    }
  // `wait` on an instance restart's operation follows that env's rollout too.
  auto asked = one_json(cli("-o json instance restart " + *after_one.begin() + in("prod")));
  auto waited_op = cli("-o json wait " + asked["operation_id"].get<std::string>() + " --timeout 90s");
  ASSERT_EQ(waited_op.exit, 0) << waited_op.out;
  EXPECT_EQ(one_json(waited_op)["rollout"]["phase"], "converged") << waited_op.out;

  // The crashing image: restarts with backoff, then fails; wait says so (exit 1), describe shows why.
  // `deploy --wait` follows the rollout as `platform wait` does; its error names the deploy's operation.
  const auto progress_file = (dev.root() / "wait-progress.txt").string();
  auto failed = run("( " + std::string(PLATFORM_BIN) + " -o json deploy" + image("crash") + m + in("crash") +
                    " --wait --timeout 120s 2>" + progress_file + " )");
  EXPECT_EQ(failed.exit, 1) << failed.out;
  const auto failed_hint = one_json(failed)["error"]["hint"].get<std::string>();
  const std::string made = "The change itself was made: operation ";
  const auto op_at = failed_hint.find(made + "op_");
  ASSERT_NE(op_at, std::string::npos) << failed_hint;
  const auto op_from = op_at + made.size();
  const auto crash_op = failed_hint.substr(op_from, failed_hint.find('.', op_from) - op_from);
  {  // While it waited, stderr said how each crashing instance fared, not only the first one.
    std::ifstream f(progress_file);
    const std::string progress((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_NE(progress.find("  web-1: "), std::string::npos) << progress;
    EXPECT_NE(progress.find("  web-2: "), std::string::npos) << progress;
  }
  EXPECT_EQ(one_json(failed)["error"]["code"], "failed");
  const auto failed_details = one_json(failed)["error"]["details"];  // objects with a text, like every error's
  ASSERT_FALSE(failed_details.empty()) << failed.out;
  EXPECT_NE(failed_details[0]["text"].get<std::string>().find(": "), std::string::npos) << failed.out;
  // The same in a table: the problems go to stderr, one line each, and the exit code stays 1.
  EXPECT_EQ(cli("wait --timeout 10s" + in("crash")).exit, 1);
  // Waiting on the deploy's operation says the same: it succeeded, its rollout failed (exit 1).
  auto op_failed = cli("-o json wait " + crash_op + " --timeout 10s");
  EXPECT_EQ(op_failed.exit, 1) << op_failed.out;
  EXPECT_EQ(one_json(op_failed)["error"]["code"], "failed");
  // The error names whichever instance gave up first; web-1 gives up too, within its backoff.
  Json d;
  for (int i = 0; i < 100; ++i) {
    d = one_json(cli("-o json instance describe web-1" + in("crash")));
    if (d["state"] == "failed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(d["state"], "failed");
  EXPECT_EQ(d["restarts"], 3);
  EXPECT_EQ(d["last_exit"]["exit_code"], 3);
  std::vector<std::int64_t> delays;
  for (const auto& e : d["events"])
    if (e["type"] == "InstanceRestarting") delays.push_back(e["data"]["delay_ms"].get<std::int64_t>());
  EXPECT_EQ(delays, (std::vector<std::int64_t>{200, 400, 800}));
  EXPECT_NE(d["state_reason"].get<std::string>().find("gave up after 3 restarts"), std::string::npos) << d.dump();
  // What each crashed run wrote is in the logs, also though every run crashed (4 runs: 1 + 3 restarts).
  int crash_lines = 0;
  const auto crash_logs = one_json(cli("-o json logs --source app --instance web-1" + in("crash")));
  for (const auto& l : crash_logs["lines"])
    crash_lines += l["message"].get<std::string>().find("exiting with status 3 (ECHO_EXIT)") != std::string::npos;
  EXPECT_EQ(crash_lines, 4);
  // describe and status show what it wrote last: the reason, without a search through the logs.
  const std::string crashed = "echo: exiting with status 3 (ECHO_EXIT)";
  for (int i = 0; i < 100 && d["last_output"].empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    d = one_json(cli("-o json instance describe web-1" + in("crash")));
  }
  ASSERT_FALSE(d["last_output"].empty()) << d.dump();
  EXPECT_EQ(d["last_output"].back()["message"], crashed);
  EXPECT_EQ(d["last_output"].back()["stream"], "stderr");
  EXPECT_NE(cli("instance describe web-1" + in("crash")).out.find("  stderr: " + crashed), std::string::npos);
  auto crash_status = cli("status" + in("crash"));
  EXPECT_NE(crash_status.out.find("    last output, stderr: " + crashed), std::string::npos) << crash_status.out;
  // `platform restart` gives instances that gave up a fresh start (here they crash again: exit 1).
  std::set<std::string> gave_up;
  const auto crash_st = one_json(cli("-o json status" + in("crash")));  // (a named value: loops below read into it)
  for (const auto& i : crash_st["instances"])
    if (i["state"] == "failed") gave_up.insert(i["id"].get<std::string>());
  ASSERT_FALSE(gave_up.empty()) << crash_st.dump();
  auto retried = cli("-o json restart --wait --timeout 60s" + in("crash"));
  EXPECT_EQ(retried.exit, 1) << retried.out;
  const auto crash_after = one_json(cli("-o json instance list" + in("crash")));
  for (const auto& i : crash_after["instances"]) EXPECT_FALSE(gave_up.count(i["id"].get<std::string>())) << i.dump();

  // Past its memory limit: reported as OOM, not as a plain exit.
  ASSERT_EQ(cli("config set ECHO_ALLOC_MIB=256" + in("oom")).exit, 0);
  ASSERT_EQ(cli("-o json deploy" + image("v1") + m + in("oom")).exit, 0);
  EXPECT_EQ(cli("-o json wait --timeout 120s" + in("oom")).exit, 1);
  Json oom;
  for (int i = 0; i < 100; ++i) {  // wait named the first to give up; web-1 has exited at least once by then
    oom = one_json(cli("-o json instance describe web-1" + in("oom")));
    if (!oom["last_exit"].is_null()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(oom["last_exit"].is_null()) << oom.dump();
  EXPECT_TRUE(oom["last_exit"]["oom"].get<bool>()) << oom.dump();
  EXPECT_NE(oom["last_exit"]["reason"].get<std::string>().find("out of memory"), std::string::npos);

  // Deploy B, then roll back to A: instances converge on A's digest again.
  ASSERT_EQ(cli("-o json deploy" + image("v2") + m + in("prod")).exit, 0);
  ASSERT_EQ(cli("-o json wait --timeout 120s" + in("prod")).exit, 0);
  st = one_json(cli("-o json status" + in("prod")));
  EXPECT_EQ(st["release"]["digest"], digests.at("v2"));
  EXPECT_EQ(instance_releases(st, "web"), (std::multiset<std::string>{"v2"}));
  ASSERT_EQ(cli("-o json rollback" + in("prod")).exit, 0);
  ASSERT_EQ(cli("-o json wait --timeout 120s" + in("prod")).exit, 0);
  st = one_json(cli("-o json status" + in("prod")));
  EXPECT_EQ(st["release"]["digest"], digests.at("v1"));
  EXPECT_EQ(instance_releases(st, "web"), (std::multiset<std::string>{"v1"}));
  EXPECT_EQ(instance_releases(st, "worker"), (std::multiset<std::string>{"v1"}));
  for (const auto& i : st["instances"]) {
    if (i["desired"] != "run") continue;
    auto di = one_json(cli("-o json instance describe " + i["name"].get<std::string>() + in("prod")));
    std::string started_digest;
    for (const auto& e : di["events"])
      if (e["type"] == "InstanceStarted") started_digest = e["data"]["image_digest"];
    EXPECT_EQ(started_digest, digests.at("v1")) << di.dump();
  }

  // A release that crashes where an older one serves: the failure names the release that still serves
  // and the rollback to it; that command, run as given, brings the env back.
  auto broke = cli("-o json deploy" + image("crash") + m + in("prod") + " --wait --timeout 120s");
  EXPECT_EQ(broke.exit, 1) << broke.out;
  const auto back_hint = one_json(broke)["error"]["hint"].get<std::string>();
  EXPECT_NE(back_hint.find("Release v1 still serves ("), std::string::npos) << back_hint;
  const std::string go_back = "`platform rollback v1 ";
  const auto go_at = back_hint.find(go_back);
  ASSERT_NE(go_at, std::string::npos) << back_hint;
  const auto go_from = go_at + go_back.size();
  const auto go_flags = back_hint.substr(go_from, back_hint.find('`', go_from) - go_from);
  EXPECT_NE(go_flags.find("--env prod"), std::string::npos) << back_hint;
  ASSERT_EQ(cli("-o json rollback v1 " + go_flags + " --wait --timeout 120s").exit, 0);
  EXPECT_EQ(one_json(cli("-o json status" + in("prod")))["release"]["digest"], digests.at("v1"));
  // An env's first release has nothing to go back to, and the hint does not pretend it has.
  EXPECT_EQ(failed_hint.find("rollback"), std::string::npos) << failed_hint;

  // A process that ignores SIGTERM is killed after its stop_timeout (1s for the worker), not the
  // default 10 s; describe says how long it had and where that is set.
  ASSERT_EQ(cli("config set ECHO_IGNORE_TERM=1" + in("stubborn")).exit, 0);
  ASSERT_EQ(cli("-o json deploy" + image("v1") + m + in("stubborn") + " --wait --timeout 120s").exit, 0);
  const auto stop_from = std::chrono::steady_clock::now();
  ASSERT_EQ(cli("-o json scale worker=0" + in("stubborn") + " --wait --timeout 60s").exit, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - stop_from, std::chrono::seconds(8)) << "waited for the default 10 s";
  Json stubborn, stubborn_list;
  std::string stopped_how;
  for (int i = 0; i < 100 && stopped_how.empty(); ++i) {  // the agent's report of the stop may come a moment later
    if (i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    stubborn_list = one_json(cli("-o json instance list --all" + in("stubborn")));
    if (!stubborn_list.is_object()) continue;
    for (const auto& x : stubborn_list.value("instances", Json::array()))
      if (x["process"] == "worker")
        stubborn = one_json(cli("-o json instance describe " + x["name"].get<std::string>() + in("stubborn")));
    if (!stubborn.is_object()) continue;
    for (const auto& e : stubborn.value("events", Json::array()))
      if (e["type"] == "InstanceStopped") stopped_how = e["data"].value("exit", "");
  }
  EXPECT_EQ(stopped_how, "killed by signal 9 (Killed) after 1s without exiting on SIGTERM (its stop_timeout)")
      << stubborn.dump() << stubborn_list.dump();
  // An env that holds an address is deleted only when confirmed (no terminal here: --yes).
  auto unconfirmed = cli("-o json env delete stubborn --org dev --project inst --app echo");
  EXPECT_EQ(unconfirmed.exit, 6) << unconfirmed.out;
  EXPECT_EQ(one_json(unconfirmed)["error"]["details"][0]["confirm"], "stubborn") << unconfirmed.out;
  ASSERT_EQ(cli("-o json env delete stubborn --yes --org dev --project inst --app echo").exit, 0);

  // kill -9 of the agent mid-rollout: it comes back (platformd dev restarts it), adopts what runs,
  // and the rollout converges; no instance ever has two runs at once.
  ASSERT_EQ(cli("-o json scale web=2" + in("prod")).exit, 0);
  ASSERT_EQ(cli("-o json wait --timeout 90s" + in("prod")).exit, 0);
  ASSERT_EQ(cli("-o json deploy" + image("v2") + m + in("prod")).exit, 0);
  // Mid-rollout: a new instance has started while the old ones still run.
  bool mid = false;
  for (int i = 0; i < 400 && !mid; ++i) {
    auto now = one_json(cli("-o json status" + in("prod")));
    int fresh = 0, old = 0;
    for (const auto& x : now["instances"]) {
      if (x["desired"] != "run") continue;
      if (x["release"]["name"] == "v2" && x["state"] == "running") ++fresh;
      if (x["release"]["name"] == "v1") ++old;
    }
    mid = fresh > 0 && old > 0;
    if (!mid) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(mid) << "never saw the rollout half way";
  const auto agent_pattern = "'[p]latform-agent .*--state " + (dev.root() / "state/agent").string() + "'";
  ASSERT_EQ(run("pkill -9 -f " + agent_pattern).exit, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  bool back = false;  // platformd dev restarts it after a second
  for (int i = 0; i < 300 && !back; ++i) {
    back = !run("pgrep -f " + agent_pattern).out.empty();
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(back) << "platformd dev did not restart the agent";
  auto converged = cli("-o json wait --timeout 180s" + in("prod"));
  ASSERT_EQ(converged.exit, 0) << converged.out;
  st = one_json(converged);
  EXPECT_EQ(instance_releases(st, "web"), (std::multiset<std::string>{"v2", "v2"}));
  // One container per running instance of prod, none for its stopped ones.
  const auto sandbox = (dev.root() / "state/agent/sandbox").string();
  const auto listing = runc_list(sandbox + "/runc");
  ASSERT_EQ(listing.exit, 0) << "runc list kept failing";
  const auto& containers = listing.out;
  std::map<std::string, int> runs_per_instance;
  std::istringstream names(containers);
  for (std::string c; names >> c;) ++runs_per_instance[c.substr(0, c.rfind("-r"))];
  const auto listed = one_json(cli("-o json instance list --all" + in("prod")));
  for (const auto& i : listed["instances"]) {
    const auto id = i["id"].get<std::string>();
    const int expected = i["desired"] == "run" ? 1 : 0;
    if (i["desired"] == "run" || i["state"] == "stopped") {
      EXPECT_EQ(runs_per_instance[id], expected) << i.dump() << containers;
    }
  }

  // Ctrl-C stops the dev host's instances with everything else.
  EXPECT_TRUE(dev.stop());
  const auto left = runc_list(sandbox + "/runc");
  EXPECT_EQ(left.exit, 0) << "runc list kept failing";
  EXPECT_EQ(left.out, "")
      << run("tail -20 " + (dev.root() / "state/agent.log").string()).out;
}

// A host that goes silent is marked down; its instances are marked lost, with why, and replaced on the
// other host. When its agent comes back, it stops what it still ran of them.
TEST(EndToEnd, AHostThatGoesDownHasItsInstancesReplacedElsewhere) {
  if (!can_run_sandboxes()) GTEST_SKIP() << "needs root and runc (/usr/sbin/runc) to run sandboxes";
  DevPlatform dev;
  ASSERT_EQ(run(std::string("SAMPLE_ECHO=") + SAMPLE_ECHO_BIN + " " + SOURCE_DIR + "/scripts/sample-image " +
                dev.registry()).exit, 0);
  const auto h2_state = dev.root() / "h2";
  struct Cleanup {
    std::filesystem::path dir;
    ~Cleanup() { DevPlatform::remove_agent_leftovers(dir); }
  } cleanup{h2_state};
  auto token = one_json(cli("-o json host join-token"))["token"].get<std::string>();
  auto agent2 = std::make_unique<harness::Child>(
      std::vector<std::string>{PLATFORM_AGENT_BIN, "--join", token, "--control", dev.url(), "--state", h2_state.string(),
                               "--name", "h2"},
      (dev.root() / "h2.log").string());
  bool h2_up = false;
  for (int i = 0; i < 100 && !h2_up; ++i) {
    const auto hosts = one_json(cli("-o json host list"));
    for (const auto& h : hosts["hosts"]) h2_up |= h["name"] == "h2" && h["state"] == "up" && h["runtime"]["name"] == "sandbox";
    if (!h2_up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(h2_up);

  ASSERT_EQ(cli("project create ha --org dev").exit, 0);
  ASSERT_EQ(cli("app create echo --org dev --project ha").exit, 0);
  ASSERT_EQ(cli("env create prod --org dev --project ha --app echo").exit, 0);
  const std::string at = " --org dev --project ha --app echo --env prod";
  const auto manifest = (dev.root() / "ha.toml").string();
  std::ofstream(manifest) << harness::echo_manifest(2);
  ASSERT_EQ(cli("-o json deploy --image " + dev.registry() + "/sample/echo:v1 --manifest " + manifest + at).exit, 0);
  auto st = one_json(cli("-o json wait --timeout 120s" + at));
  ASSERT_TRUE(st["converged"].get<bool>()) << st.dump();
  std::multiset<std::string> hosts;
  std::string on_h2;
  for (const auto& i : st["instances"]) {
    hosts.insert(i["host"]["name"].get<std::string>());
    if (i["host"]["name"] == "h2") on_h2 = i["name"];
  }
  EXPECT_EQ(hosts, (std::multiset<std::string>{"dev", "h2"})) << "spread across the two hosts";
  ASSERT_FALSE(on_h2.empty());

  // h2's agent dies (its instance keeps running there); after the grace period h2 is down.
  agent2->signal(SIGKILL);
  agent2->wait();
  Json lost;
  for (int i = 0; i < 600 && lost.is_null(); ++i) {
    const auto d = one_json(cli("-o json instance describe " + on_h2 + at));
    if (d["state"] == "lost") lost = d;
    else std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(lost.is_null()) << "never marked lost";
  EXPECT_NE(lost["state_reason"].get<std::string>().find("host h2 is down"), std::string::npos) << lost.dump();
  EXPECT_EQ(lost["events"].back()["type"], "InstanceLost");
  st = one_json(cli("-o json wait --timeout 120s" + at));
  ASSERT_TRUE(st["converged"].get<bool>()) << st.dump();
  for (const auto& i : st["instances"]) {
    if (i["desired"] == "run") {
      EXPECT_EQ(i["host"]["name"], "dev") << i.dump();
    }
  }

  // h2 comes back: its agent stops the run nobody wants any more, and says so.
  agent2 = std::make_unique<harness::Child>(
      std::vector<std::string>{PLATFORM_AGENT_BIN, "--control", dev.url(), "--state", h2_state.string(),
                               "--stop-instances-on-exit"},
      (dev.root() / "h2.log").string());
  bool stopped = false;
  for (int i = 0; i < 300 && !stopped; ++i) {
    stopped = one_json(cli("-o json instance describe " + on_h2 + at))["state"] == "stopped";
    if (!stopped) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(stopped);
  const auto h2_left = runc_list((h2_state / "sandbox/runc").string());
  EXPECT_EQ(h2_left.exit, 0) << "runc list kept failing";
  EXPECT_EQ(h2_left.out, "");
  agent2->signal(SIGTERM);
  agent2->wait();
  EXPECT_TRUE(dev.stop());
}
