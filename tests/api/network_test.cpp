// Addresses, endpoints, exposure and the edge's config through the REST API, against a real PostgreSQL
// and a real OCI registry the test starts: IPv6 per env by default, the IPv4 add-on only with its price
// accepted and never allocated twice under concurrent requests, usage hours, conflicts named within an
// org and only "taken" across orgs, CLI endpoints, `exposure`, and the edge's long poll.
#include <algorithm>
#include <gtest/gtest.h>

#include <future>
#include <set>
#include <thread>

#include "api/exposure.h"
#include "api/hosts.h"
#include "api/ipam.h"
#include "engine/error_details.h"
#include "engine/oci/registry.h"
#include "ingress/edge_config.h"
#include "platformd/local_registry.h"
#include "tests/support/api_platform.h"
#include "tests/support/dev_platform.h"
#include "tests/support/registry_push.h"
#include "tests/support/test_scheduler.h"

using namespace platform;
namespace fs = std::filesystem;

namespace {

const std::string kApp = "/v1/orgs/acme/projects/shop/apps/api";
const std::string kEnvs = kApp + "/envs/";

std::string manifest(const std::string& extra) {
  return "schema_version = 1\n[app]\nname = \"api\"\n[processes.web]\ncount = 1\nmemory = \"128MiB\"\n"
         "[processes.worker]\ncount = 1\nmemory = \"128MiB\"\n" +
         extra;
}
const std::string kEndpoint = "[[endpoints]]\nname = \"db\"\nport = 5432\ninternal_port = 5432\nprocess = \"web\"\n";
const std::string kEndpointV4 = kEndpoint + "ipv4 = true\n";
std::string route(const std::string& host) {
  return "[[routes]]\nhostnames = [\"" + host + "\"]\nprocess = \"web\"\ninternal_port = 8443\nproxy_protocol = \"v2\"\n";
}

void configure(const std::string& conninfo, const api::Pools& pools) {
  db::Pool pool(conninfo, 1);
  pool.transact([&](pqxx::work& tx) { api::configure_pools(tx, pools); });
}

void tls_on_8443(api::ServerOptions& o) { o.edge_tls_listen = {{"::1", 8443}, {"127.0.0.1", 8443}}; }

// The error a call throws: its code and message.
std::pair<ErrorCode, std::string> error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const PlatformError& e) {
    return {e.error().code, e.error().message};
  }
  return {ErrorCode::internal, "no error"};
}

class NetworkTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(harness::PgEnvironment::get().root() / "registry-network");
    registry_ = new dev::LocalRegistry({dir_->string(), dev::free_loopback_port(36000, 40000), ""});
    registry_->start();
    platform_ = new harness::Platform(tls_on_8443);
    configure(platform_->conninfo, {"fd00:70::/120", "192.0.2.0/28", "10.77.0.0/24", 250});
    harness::create_envs(platform_->client(), {"prod", "v4", "quote", "meter", "routes-a", "routes-b", "cli", "gone",
                                               "edge", "bad", "back", "seen", "tlsheld"});
    oci::RegistryClient c;
    auto ref = oci::parse_image_ref(image());
    harness::push_manifest(c, ref, "v1", oci::kOciManifest, harness::push_image(c, ref, "amd64", "layer v1"));
  }
  static void TearDownTestSuite() {
    delete platform_;
    delete registry_;
    delete dir_;
  }

  static std::string image() { return registry_->address() + "/acme/api:v1"; }
  // Enrols a host (as alice would with a join token) and returns its credential, as an edge would hold it.
  static std::string enrol_host(const std::string& name) {
    pqxx::connection c(platform_->conninfo);
    pqxx::work tx(c);
    const auto alice = tx.exec("SELECT id FROM core.users WHERE name = 'alice'")[0][0].as<std::string>();
    auto token = api::issue_join_token(tx, alice, std::chrono::seconds(600), "req", "op");
    auto credential = api::enrol_host(tx, token.secret, name,
                                      {{"capacity", {{"cpus", 2}, {"memory_mib", 1024}, {"disk_mib", 1000}}},
                                       {"runtime", {{"name", "none"}, {"reason", "test"}}}})
                          .credential;
    tx.commit();
    return credential;
  }

  static api::Client client() { return platform_->client(); }
  static Json deploy(const std::string& env, const std::string& m, std::optional<int> accept_ipv4 = std::nullopt,
                     const api::Client& c = client(), const std::string& envs = kEnvs) {
    Json body = {{"image", image()}, {"manifest", m}};
    if (accept_ipv4) body["accept_ipv4_price_cents_month"] = *accept_ipv4;
    return c.call("POST", envs + env + "/deploys", body, new_id("idem"), std::chrono::seconds(60));
  }
  static Json ips(const std::string& env, bool all = false) {
    return client().call("GET", kEnvs + env + "/ips" + (all ? "?all=true" : ""))["addresses"];
  }
  static Json exposure() { return client().call("GET", "/v1/orgs/acme/exposure")["exposed"]; }
  static pqxx::result sql(const std::string& q) {
    pqxx::connection c(platform_->conninfo);
    pqxx::work tx(c);
    auto r = tx.exec(q);
    tx.commit();
    return r;
  }

  static inline fs::path* dir_ = nullptr;
  static inline dev::LocalRegistry* registry_ = nullptr;
  static inline harness::Platform* platform_ = nullptr;
};

TEST_F(NetworkTest, AFirstDeployGivesTheEnvItsOwnIpv6AndNoIpv4) {
  auto r = deploy("prod", manifest(kEndpoint));
  ASSERT_EQ(r["addresses"].size(), 1u) << r.dump();
  const auto address = r["addresses"][0]["address"].get<std::string>();
  EXPECT_EQ(r["addresses"][0]["family"], "ipv6");
  EXPECT_EQ(address.rfind("fd00:70::", 0), 0u) << address;
  EXPECT_EQ(r["addresses"][0]["price"], "included");
  auto list = ips("prod");
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["address"], address);
  // A second deploy keeps the address.
  auto again = deploy("prod", manifest(kEndpoint + "\n[config]\noptional = [\"X\"]\n"));
  EXPECT_EQ(again["addresses"][0]["address"], address);
  EXPECT_EQ(ips("prod").size(), 1u);
  // Exposure: the endpoint on that address only, raw TCP, to process web.
  int rows = 0;
  for (const auto& x : exposure()) {
    if (x["target"]["env"] != "prod") continue;
    ++rows;
    EXPECT_EQ(x["family"], "ipv6");
    EXPECT_EQ(x["address"], address);
    EXPECT_EQ(x["port"], 5432);
    EXPECT_EQ(x["protocol"], "tcp");
    EXPECT_EQ(x["proxy_protocol"], "off");
    EXPECT_EQ(x["target"]["process"], "web");
    EXPECT_EQ(x["target"]["internal_port"], 5432);
    EXPECT_EQ(x["backends"]["total"], 0);
  }
  EXPECT_EQ(rows, 1);
  // The allocation is an event, and the audit view shows it.
  auto events = client().call("GET", "/v1/orgs/acme/events?type=IpAllocated")["events"];
  EXPECT_FALSE(events.empty());
  EXPECT_EQ(sql("SELECT count(*) FROM audit.ip_allocations WHERE env = 'prod' AND family = 6")[0][0].as<int>(), 1);
}

TEST_F(NetworkTest, TheIpv4AddOnNeedsItsPriceAcceptedAtDeploy) {
  auto [code, message] = error_of([] { deploy("v4", manifest(kEndpointV4)); });
  EXPECT_EQ(code, ErrorCode::precondition_failed);
  EXPECT_NE(message.find("$2.50/month"), std::string::npos) << message;
  EXPECT_EQ(error_of([] { deploy("v4", manifest(kEndpointV4), 100); }).first, ErrorCode::precondition_failed);
  EXPECT_TRUE(ips("v4").empty()) << "a refused deploy allocates nothing";
  auto r = deploy("v4", manifest(kEndpointV4), 250);
  std::set<std::string> families;
  for (const auto& a : r["addresses"]) families.insert(a["family"]);
  EXPECT_EQ(families, (std::set<std::string>{"ipv4", "ipv6"}));
  auto list = ips("v4");
  ASSERT_EQ(list.size(), 2u);
  for (const auto& a : list)
    if (a["family"] == "ipv4") {
      EXPECT_EQ(a["price"], "$2.50/month");
      EXPECT_EQ(a["address"].get<std::string>().rfind("192.0.2.", 0), 0u);
    }
  // Exposure lists the endpoint on both families, the IPv4 row marked as the add-on.
  int v4_rows = 0;
  for (const auto& x : exposure())
    if (x["target"]["env"] == "v4" && x["family"] == "ipv4") {
      ++v4_rows;
      EXPECT_EQ(x["add_on"], "ipv4");
    }
  EXPECT_EQ(v4_rows, 1);
  // Once held, later deploys need no acceptance.
  deploy("v4", manifest(kEndpointV4 + "\n[config]\noptional = [\"Y\"]\n"));
}

// `platform rollback` and `platform deploy --apply` cannot know beforehand whether the release they land
// on asks for the IPv4 add-on: refused for want of an accepted price, the CLI accepts it with --yes (or
// asks on a terminal) and sends the request again; without either it exits 6 naming the price and --yes.
TEST_F(NetworkTest, RollbackAndPlannedDeploysTakeYesForTheIpv4AddOn) {
  const auto dir = harness::PgEnvironment::get().root() / "cli-back";
  fs::create_directories(dir);
  const std::string env_vars = "PLATFORM_CONFIG=" + (dir / "none.json").string() + " PLATFORM_URL=" +
                               platform_->url + " PLATFORM_TOKEN=" + platform_->token + " ";
  const std::string in = " --org acme --project shop --app api --env back";
  auto cli = [&](const std::string& args) { return e2e::run(env_vars + PLATFORM_BIN + " -o json " + args + in); };
  auto holds_v4 = [] {
    for (const auto& a : ips("back"))
      if (a["family"] == "ipv4") return true;
    return false;
  };
  deploy("back", manifest(kEndpointV4), 250);  // v1 asks for the add-on
  deploy("back", manifest(kEndpoint));         // v2 does not; the address stays held
  client().call("DELETE", kEnvs + "back/ips/ipv4", std::nullopt, new_id("idem"));
  ASSERT_FALSE(holds_v4());

  auto refused = cli("rollback v1 < /dev/null");
  EXPECT_EQ(refused.exit, 6) << refused.out;
  const auto error = e2e::one_json(refused)["error"];
  EXPECT_NE(error["message"].get<std::string>().find("$2.50/month"), std::string::npos) << refused.out;
  EXPECT_NE(error["hint"].get<std::string>().find("--yes"), std::string::npos) << refused.out;
  EXPECT_FALSE(holds_v4()) << "a refused rollback allocates nothing";
  auto back = cli("rollback v1 --yes");
  ASSERT_EQ(back.exit, 0) << back.out;
  EXPECT_TRUE(holds_v4());

  // The same for a plan: made while the env holds no IPv4, applied with --yes.
  ASSERT_EQ(cli("rollback v2").exit, 0);
  client().call("DELETE", kEnvs + "back/ips/ipv4", std::nullopt, new_id("idem"));
  const auto manifest_file = (dir / "platform.toml").string();
  std::ofstream(manifest_file) << manifest(kEndpointV4 + "\n[config]\noptional = [\"Z\"]\n");
  const auto plan_file = (dir / "plan.json").string();
  auto planned = cli("deploy --image " + image() + " --manifest " + manifest_file + " --plan " + plan_file);
  ASSERT_EQ(planned.exit, 0) << planned.out;
  EXPECT_EQ(cli("deploy --apply " + plan_file + " < /dev/null").exit, 6);
  EXPECT_FALSE(holds_v4());
  auto applied = cli("deploy --apply " + plan_file + " --yes");
  ASSERT_EQ(applied.exit, 0) << applied.out;
  EXPECT_TRUE(holds_v4());
}

TEST_F(NetworkTest, AllocateV4QuotesThePriceAndNeedsItAccepted) {
  auto quote = client().call("GET", kEnvs + "quote/ips/ipv4-quote");
  EXPECT_EQ(quote["price_cents_month"], 250);
  EXPECT_EQ(quote["price"], "$2.50/month");
  EXPECT_TRUE(quote["held"].is_null());
  auto r = client().request("POST", kEnvs + "quote/ips/ipv4", "{}");
  EXPECT_EQ(r.status, 412) << r.body;
  EXPECT_NE(r.body.find("$2.50/month"), std::string::npos);
  auto ok = client().call("POST", kEnvs + "quote/ips/ipv4", Json{{"accept_price_cents_month", 250}}, new_id("idem"));
  EXPECT_EQ(ok["address"]["family"], "ipv4");
  EXPECT_FALSE(ok["events"].empty());
  // Asking again answers the same address, allocating nothing.
  auto again = client().call("POST", kEnvs + "quote/ips/ipv4", Json{{"accept_price_cents_month", 250}}, new_id("idem"));
  EXPECT_EQ(again["address"]["address"], ok["address"]["address"]);
  EXPECT_TRUE(again["events"].empty());
  EXPECT_EQ(client().call("GET", kEnvs + "quote/ips/ipv4-quote")["held"]["address"], ok["address"]["address"]);
  // Released, it is gone from the live list and shown as released with --all.
  auto rel = client().call("DELETE", kEnvs + "quote/ips/ipv4", std::nullopt, new_id("idem"));
  EXPECT_EQ(rel["address"]["state"], "released");
  for (const auto& a : ips("quote")) EXPECT_NE(a["family"], "ipv4");
  bool released = false;
  for (const auto& a : ips("quote", true)) released |= a["family"] == "ipv4" && a["state"] == "released";
  EXPECT_TRUE(released);
  EXPECT_EQ(client().request("DELETE", kEnvs + "quote/ips/ipv4").status, 404);
}

TEST_F(NetworkTest, EveryStartedHourOfAPricedAddressIsOneUsageRecord) {
  auto a = client().call("POST", kEnvs + "meter/ips/ipv4", Json{{"accept_price_cents_month", 250}}, new_id("idem"));
  const auto id = a["address"]["id"].get<std::string>();
  // As if it had been allocated a minute into the clock hour three hours ago: four clock hours have
  // started (that one, the two after it and this one), whatever the time is now.
  sql("UPDATE core.ip_allocations SET allocated_at = date_trunc('hour', now()) - interval '3 hours' + interval '1 minute'"
      " WHERE id = '" + id + "'");
  db::Pool pool(platform_->conninfo, 1);
  pool.transact([](pqxx::work& tx) { return api::meter_usage(tx); });
  auto hours = [&] {
    return sql("SELECT count(*) FROM core.ip_usage WHERE allocation_id = '" + id + "'")[0][0].as<int>();
  };
  EXPECT_EQ(hours(), 4);
  pool.transact([](pqxx::work& tx) { return api::meter_usage(tx); });
  EXPECT_EQ(hours(), 4) << "an hour is recorded once";
  // IPv6 addresses are included: never metered.
  EXPECT_EQ(sql("SELECT count(*) FROM core.ip_usage u JOIN core.ip_allocations a ON a.id = u.allocation_id"
                " WHERE a.family = 6")[0][0].as<int>(), 0);
  client().call("DELETE", kEnvs + "meter/ips/ipv4", std::nullopt, new_id("idem"));
  EXPECT_EQ(hours(), 4);
  for (const auto& x : ips("meter", true))
    if (x["id"] == id) {
      EXPECT_EQ(x["usage_hours"], 4);
    }
}

TEST_F(NetworkTest, HostNamesAndPortsConflictNamingTheHolderOnlyWithinTheOrg) {
  deploy("routes-a", manifest(route("shop.example.com")));
  auto [code, message] = error_of([] { deploy("routes-b", manifest(route("shop.example.com"))); });
  EXPECT_EQ(code, ErrorCode::name_taken);
  EXPECT_NE(message.find("project shop app api env routes-a"), std::string::npos) << message;
  // Another org learns only that it is taken.
  auto mallory = platform_->client(platform_->other_token);
  mallory.call("POST", "/v1/orgs", Json{{"name", "evil"}});
  mallory.call("POST", "/v1/orgs/evil/projects", Json{{"name", "p"}});
  mallory.call("POST", "/v1/orgs/evil/projects/p/apps", Json{{"name", "api"}});
  mallory.call("POST", "/v1/orgs/evil/projects/p/apps/api/envs", Json{{"name", "e"}});
  auto [evil_code, evil_message] = error_of(
      [&] { deploy("e", manifest(route("shop.example.com")), std::nullopt, mallory, "/v1/orgs/evil/projects/p/apps/api/envs/"); });
  EXPECT_EQ(evil_code, ErrorCode::name_taken);
  EXPECT_NE(evil_message.find("is taken"), std::string::npos) << evil_message;
  EXPECT_EQ(evil_message.find("routes-a"), std::string::npos) << evil_message;
  EXPECT_EQ(evil_message.find("shop"), evil_message.find("shop.example.com")) << evil_message;
  // Mallory's exposure shows nothing of acme's.
  EXPECT_TRUE(mallory.call("GET", "/v1/orgs/evil/exposure")["exposed"].empty());
  // A route dropped by a deploy frees its name for another env.
  deploy("routes-a", manifest(route("other.example.com")));
  deploy("routes-b", manifest(route("shop.example.com")));
  // The same port on two envs is fine (each has its own address).
  deploy("routes-a", manifest(route("other.example.com") + kEndpoint));
  deploy("routes-b", manifest(route("shop.example.com") + kEndpoint));
  // Routes listen on the shared TLS listeners, passthrough.
  int rows = 0;
  for (const auto& x : exposure())
    if (x["kind"] == "route" && x["target"]["env"] == "routes-b") {
      ++rows;
      EXPECT_EQ(x["sni"], Json::array({"shop.example.com"}));
      EXPECT_EQ(x["port"], 8443);
      EXPECT_EQ(x["protocol"], "tls");
      EXPECT_EQ(x["proxy_protocol"], "v2");
      EXPECT_NE(x["tls"].get<std::string>().find("passthrough"), std::string::npos);
    }
  EXPECT_EQ(rows, 2);  // [::1]:8443 and 127.0.0.1:8443
}

TEST_F(NetworkTest, EndpointsMadeWithTheCliLiveBesideTheManifestOnes) {
  deploy("cli", manifest(kEndpoint));
  const auto base = kEnvs + "cli/endpoints";
  auto made = client().call("POST", base, Json{{"port", 9000}, {"internal_port", 9090}, {"process", "worker"},
                                               {"proxy_protocol", "v2"}}, new_id("idem"));
  EXPECT_EQ(made["endpoint"]["name"], "worker-9000");
  EXPECT_EQ(made["endpoint"]["source"], "cli");
  EXPECT_EQ(made["endpoint"]["proxy_protocol"], "v2");
  EXPECT_EQ(made["endpoint"]["addresses"].size(), 1u);
  auto list = client().call("GET", base)["endpoints"];
  std::set<std::string> names;
  for (const auto& e : list) names.insert(e["name"].get<std::string>() + "/" + e["source"].get<std::string>());
  EXPECT_EQ(names, (std::set<std::string>{"db/manifest", "worker-9000/cli"}));
  EXPECT_EQ(client().call("GET", base + "/worker-9000")["internal_port"], 9090);
  // The manifest's port is taken by the manifest; a second CLI endpoint on 9000 too.
  auto clash = client().request("POST", base, Json{{"port", 5432}, {"process", "web"}}.dump());
  EXPECT_EQ(clash.status, 409);
  EXPECT_NE(clash.body.find("this env's manifest"), std::string::npos) << clash.body;
  // The way out fits the holder: a manifest's port leaves with a deploy, a CLI one with endpoint delete.
  EXPECT_NE(clash.body.find("remove it from platform.toml and deploy"), std::string::npos) << clash.body;
  EXPECT_EQ(clash.body.find("platform endpoint delete"), std::string::npos) << clash.body;
  auto twice = client().request("POST", base, Json{{"port", 9000}, {"process", "web"}, {"name", "again"}}.dump());
  EXPECT_EQ(twice.status, 409);
  EXPECT_NE(twice.body.find("platform endpoint create"), std::string::npos) << twice.body;
  // ... naming the endpoint that holds the port, in a command that works when pasted.
  EXPECT_NE(twice.body.find("platform endpoint delete worker-9000 --project shop --app api --env cli"), std::string::npos)
      << twice.body;
  // The process must be one the env's release runs: exit 2 (400) names them, with the closest.
  auto nope = client().request("POST", base, Json{{"port", 9100}, {"process", "wroker"}}.dump());
  EXPECT_EQ(nope.status, 400) << nope.body;
  EXPECT_NE(nope.body.find("has no process \\\"wroker\\\""), std::string::npos) << nope.body;
  EXPECT_NE(nope.body.find("Did you mean \\\"worker\\\"? Its processes: web, worker."), std::string::npos) << nope.body;
  // An endpoint not found: the closest name and the list command with the env's flags.
  auto missing = client().request("GET", base + "/worker-900");
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.body.find("Did you mean \\\"worker-9000\\\"?"), std::string::npos) << missing.body;
  EXPECT_NE(missing.body.find("platform endpoint list --project shop --app api --env cli"), std::string::npos)
      << missing.body;
  // A process's name where the endpoint's was meant: its endpoints are named.
  auto process = client().request("GET", base + "/worker");
  EXPECT_EQ(process.status, 404);
  EXPECT_NE(process.body.find("\\\"worker\\\" is a process; its endpoint is \\\"worker-9000\\\"."), std::string::npos)
      << process.body;
  // A deploy whose manifest takes the CLI endpoint's port is refused, naming it.
  auto [code, message] = error_of([] {
    deploy("cli", manifest(kEndpoint + "[[endpoints]]\nname = \"w\"\nport = 9000\ninternal_port = 9000\nprocess = \"worker\"\n"));
  });
  EXPECT_EQ(code, ErrorCode::name_taken);
  EXPECT_NE(message.find("platform endpoint create"), std::string::npos) << message;
  // A manifest endpoint is deleted by a deploy, not here.
  EXPECT_EQ(client().request("DELETE", base + "/db").status, 412);
  auto gone = client().call("DELETE", base + "/worker-9000", std::nullopt, new_id("idem"));
  EXPECT_EQ(gone["endpoint"]["name"], "worker-9000");
  EXPECT_EQ(client().request("GET", base + "/worker-9000").status, 404);
  // Its port is free again.
  client().call("POST", base, Json{{"port", 9000}, {"process", "web"}}, new_id("idem"));
  // A release without the process a CLI endpoint reaches: the diff, the deploy and the rollback back
  // to it say that endpoint has no backends under it, and how to delete it.
  client().call("POST", base, Json{{"name", "jobs"}, {"port", 9001}, {"process", "worker"}}, new_id("idem"));
  const std::string web_only =
      "schema_version = 1\n[app]\nname = \"api\"\n[processes.web]\ncount = 1\nmemory = \"128MiB\"\n" + kEndpoint;
  auto planned = client().call("POST", kEnvs + "cli/deploys",
                               Json{{"image", image()}, {"manifest", web_only}, {"dry_run", true}});
  ASSERT_EQ(planned["stranded_endpoints"].size(), 1u) << planned.dump();
  EXPECT_EQ(planned["stranded_endpoints"][0]["endpoint"], "jobs");
  auto web_release = deploy("cli", web_only);
  ASSERT_EQ(web_release["stranded_endpoints"].size(), 1u) << web_release.dump();
  EXPECT_NE(web_release["stranded_endpoints"][0]["text"].get<std::string>().find(
                "platform endpoint delete jobs --project shop --app api --env cli"),
            std::string::npos);
  auto back = client().call("POST", kEnvs + "cli/rollback", Json::object(), new_id("idem"));
  EXPECT_TRUE(back["stranded_endpoints"].empty()) << back.dump();  // the release it went back to runs worker
  std::set<std::string> types;
  const auto page = client().call("GET", "/v1/orgs/acme/events?type=Endpoint*&limit=1000");
  for (const auto& e : page["events"]) types.insert(e["type"].get<std::string>());
  EXPECT_EQ(types, (std::set<std::string>{"EndpointCreated", "EndpointDeleted"}));
}

TEST_F(NetworkTest, ADeletedEnvGivesBackItsAddressesAndNames) {
  deploy("gone", manifest(kEndpointV4 + route("gone.example.com")), 250);
  ASSERT_EQ(ips("gone").size(), 2u);
  // Not without confirmation: the answer says what would go, and the name that confirms it.
  auto refused = client().request("DELETE", kEnvs + "gone");
  EXPECT_EQ(refused.status, 412) << refused.body;
  const auto why = Json::parse(refused.body);
  ASSERT_EQ(why["details"].size(), 1u) << refused.body;
  EXPECT_EQ(why["details"][0]["confirm"], "gone");
  EXPECT_EQ(why["details"][0]["addresses"].size(), 2u) << refused.body;
  EXPECT_NE(why["message"].get<std::string>().find("holds ipv6 "), std::string::npos) << refused.body;
  EXPECT_EQ(client().request("DELETE", kEnvs + "gone?confirm=other").status, 412);
  EXPECT_EQ(ips("gone").size(), 2u);  // nothing happened
  client().call("DELETE", kEnvs + "gone?confirm=gone", std::nullopt, new_id("idem"));
  EXPECT_EQ(sql("SELECT count(*) FROM core.ip_allocations a JOIN core.resources e ON e.id = a.env_id"
                " WHERE e.name = 'gone' AND a.released_at IS NULL")[0][0].as<int>(), 0);
  EXPECT_EQ(sql("SELECT count(*) FROM core.exposure_claims WHERE key = 'gone.example.com'")[0][0].as<int>(), 0);
  for (const auto& x : exposure()) EXPECT_NE(x["target"]["env"], "gone");
}

TEST_F(NetworkTest, BadInputGetsItsStatus) {
  const auto base = kEnvs + "bad";
  auto check = [&](const std::string& method, const std::string& target, const std::string& body, int status) {
    auto r = client().request(method, target, body);
    EXPECT_EQ(r.status, status) << method << " " << target << " " << body << " -> " << r.body;
    EXPECT_TRUE(platform_->healthy());
  };
  check("POST", base + "/endpoints", R"({"port": 0, "process": "web"})", 400);
  check("POST", base + "/endpoints", R"({"port": 70000, "process": "web"})", 400);
  check("POST", base + "/endpoints", R"({"port": 80, "process": "web", "proxy_protocol": "v1"})", 400);
  check("POST", base + "/endpoints", R"({"port": 80, "process": "Web Server"})", 400);
  check("POST", base + "/endpoints", R"({"port": "80", "process": "web"})", 400);
  check("POST", base + "/endpoints", R"({"port": 80})", 400);
  check("POST", base + "/endpoints", R"({"port": 80, "process": "web", "colour": 1})", 400);
  check("POST", base + "/ips/ipv5", "{}", 404);
  check("POST", base + "/ips/ipv4", R"({"accept_price_cents_month": "250"})", 400);
  check("GET", base + "/endpoints/nothing", "", 404);
  // Another org's env is not found, never forbidden.
  auto r = platform_->client(platform_->other_token).request("GET", base + "/ips");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(platform_->client(platform_->other_token).request("GET", "/v1/orgs/acme/exposure").status, 404);
}

TEST_F(NetworkTest, TheEdgeLongPollsItsSnapshotWithAHostCredential) {
  const auto credential = enrol_host("edge-host");
  api::Client edge(platform_->url, credential);
  EXPECT_EQ(api::Client(platform_->url, platform_->token).request("GET", "/v1/edge/config").status, 401);
  EXPECT_EQ(api::Client(platform_->url, "").request("GET", "/v1/edge/config").status, 401);
  EXPECT_EQ(edge.request("GET", "/v1/edge/config?after=x").status, 400);
  EXPECT_EQ(edge.request("GET", "/v1/edge/config?wait=2h").status, 400);
  deploy("edge", manifest(kEndpoint));
  auto first = edge.call("GET", "/v1/edge/config");
  const auto version = first["version"].get<std::int64_t>();
  EXPECT_EQ(first["tls"]["listen"].size(), 2u);
  bool listed = false;
  for (const auto& e : first["endpoints"])
    if (e["name"] == "api/edge/db") {
      listed = true;
      ASSERT_EQ(e["listen"].size(), 1u);
      EXPECT_EQ(e["listen"][0]["port"], 5432);
      EXPECT_TRUE(e["backends"].empty()) << "no instance runs";
    }
  EXPECT_TRUE(listed) << first.dump();
  // Asked again with its version, nothing changed: the long poll answers the same version at the end.
  auto same = edge.call("GET", "/v1/edge/config?after=" + std::to_string(version) + "&wait=1s");
  EXPECT_EQ(same["version"], version);
  // A change wakes a waiting poll with a new version.
  auto waiting = std::async(std::launch::async, [&] {
    auto t0 = std::chrono::steady_clock::now();
    auto j = edge.call("GET", "/v1/edge/config?after=" + std::to_string(version) + "&wait=20s", std::nullopt,
                       std::string(), std::chrono::seconds(30));
    return std::make_pair(j, std::chrono::steady_clock::now() - t0);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  client().call("POST", kEnvs + "edge/endpoints", Json{{"port", 6000}, {"process", "web"}}, new_id("idem"));
  auto [next, took] = waiting.get();
  EXPECT_GT(next["version"].get<std::int64_t>(), version);
  EXPECT_LT(took, std::chrono::seconds(10));
  bool added = false;
  for (const auto& e : next["endpoints"]) added |= e["name"] == "api/edge/web-6000";
  EXPECT_TRUE(added) << next.dump();
  // platform-edge takes the snapshot as it is: endpoints on their addresses, the routes of the other
  // tests on the shared TLS listeners, PROXY v2 where asked.
  auto cfg = ingress::parse_edge_config(next);
  EXPECT_EQ(cfg->version, next["version"].get<std::int64_t>());
  EXPECT_EQ(cfg->tls_listen.size(), 2u);
  const auto* shop = cfg->route_for("shop.example.com");
  ASSERT_NE(shop, nullptr) << next.dump();
  EXPECT_TRUE(shop->proxy_v2);
  EXPECT_EQ(cfg->route_for("nobody.example.com"), nullptr);
  bool v4_listener = false;
  for (const auto& e : cfg->endpoints)
    for (const auto& a : e.listen) v4_listener |= !a.v6();
  EXPECT_TRUE(v4_listener) << "env v4 holds the add-on";
}

// The edge reports what it serves; `exposure` compares it with what it should serve, per host, and
// marks the rows an edge does not listen for.
TEST_F(NetworkTest, ExposureSaysWhatEachEdgeServesAndWhichRowsItDoesNotListenFor) {
  const auto credential = enrol_host("status-host");
  api::Client edge(platform_->url, credential);
  const Json none = Json::array();
  // Before its first poll there is nothing to report against.
  EXPECT_EQ(edge.request("POST", "/v1/edge/status", Json{{"version", 1}, {"unbound", none}}.dump()).status, 412);
  deploy("seen", manifest(kEndpoint));
  const auto version = edge.call("GET", "/v1/edge/config")["version"].get<std::int64_t>();
  auto exposure = [&] { return client().call("GET", "/v1/orgs/acme/exposure"); };
  auto edge_of = [](const Json& x) {
    for (const auto& e : x["edges"])
      if (e["host"] == "status-host") return e;
    return Json();
  };
  auto row_of = [](const Json& x) {
    for (const auto& r : x["exposed"])
      if (r["target"]["env"] == "seen" && r["family"] == "ipv6") return r;
    return Json();
  };
  // Polled, nothing reported yet: seen, serving nothing known.
  auto x = exposure();
  ASSERT_TRUE(edge_of(x).is_object()) << x.dump();
  EXPECT_EQ(edge_of(x)["state"], "behind");
  EXPECT_EQ(edge_of(x)["version"], version);
  EXPECT_TRUE(edge_of(x)["applied_version"].is_null());
  EXPECT_LE(edge_of(x)["seen_seconds_ago"].get<std::int64_t>(), 5);
  // An edge that never reported (older than the report) is not waited for: it would never say it serves.
  const auto seen = client().call("GET", kEnvs + "seen/status");  // named: a loop over a temporary's member dangles
  ASSERT_TRUE(seen["edges_pending"].is_array()) << seen.dump();
  for (const auto& h : seen["edges_pending"]) EXPECT_NE(h, "status-host");
  const auto row = row_of(x);
  ASSERT_TRUE(row.is_object()) << x.dump();
  EXPECT_FALSE(row.contains("not_listening"));

  // Bad reports are refused; another credential (a user's) is not a host's.
  auto post = [&](const Json& body) { return edge.request("POST", "/v1/edge/status", body.dump()).status; };
  EXPECT_EQ(api::Client(platform_->url, platform_->token).request("POST", "/v1/edge/status",
                                                                    Json{{"version", version}, {"unbound", none}}.dump())
                .status,
            401);
  EXPECT_EQ(post({{"version", version}}), 400);
  EXPECT_EQ(post({{"version", -1}, {"unbound", none}}), 400);
  EXPECT_EQ(post({{"version", version}, {"unbound", none}, {"colour", 1}}), 400);
  const Json taken = {{"address", row["address"]}, {"port", 5432}, {"kind", "tcp"}, {"error", "Address already in use"}};
  for (const auto& [k, v] : std::vector<std::pair<std::string, Json>>{
           {"port", 0}, {"port", 70000}, {"kind", "udp"}, {"address", 7}, {"error", nullptr}, {"colour", "red"}}) {
    auto bad = taken;
    bad[k] = v;
    EXPECT_EQ(post({{"version", version}, {"unbound", Json::array({bad})}}), 400) << k;
  }
  EXPECT_EQ(post({{"version", version}, {"unbound", Json::array({taken})}}), 200);
  x = exposure();
  EXPECT_EQ(edge_of(x)["state"], "partial");
  EXPECT_EQ(edge_of(x)["applied_version"], version);
  ASSERT_EQ(row_of(x)["not_listening"].size(), 1u) << x.dump();
  EXPECT_EQ(row_of(x)["not_listening"][0]["host"], "status-host");
  EXPECT_EQ(row_of(x)["not_listening"][0]["error"], "Address already in use");

  // A long error is cut to 300 bytes, before a character rather than inside one.
  auto long_error = taken;
  long_error["error"] = std::string(299, 'x') + "\u00e9 and more";
  EXPECT_EQ(post({{"version", version}, {"unbound", Json::array({long_error})}}), 200);
  EXPECT_EQ(edge_of(exposure())["unbound"][0]["error"], std::string(299, 'x'));

  // What the edge cannot bind for others (another org's address, say) is not this org's to see, and
  // does not make the edge partial in its eyes.
  const Json others = {{"address", "2001:db8::99"}, {"port", 7777}, {"kind", "tcp"}, {"error", "Address already in use"}};
  EXPECT_EQ(post({{"version", version}, {"unbound", Json::array({others, taken})}}), 200);
  x = exposure();
  EXPECT_EQ(edge_of(x)["state"], "partial");
  EXPECT_EQ(edge_of(x)["unbound"], Json::array({taken})) << x.dump();
  EXPECT_EQ(post({{"version", version}, {"unbound", Json::array({others})}}), 200);
  x = exposure();
  EXPECT_EQ(edge_of(x)["state"], "current") << x.dump();
  EXPECT_TRUE(edge_of(x)["unbound"].empty()) << x.dump();

  // Bound at last: current, nothing marked. No build reported so far (an edge too old to send one).
  EXPECT_EQ(post({{"version", version}, {"unbound", none}}), 200);
  x = exposure();
  EXPECT_EQ(edge_of(x)["state"], "current");
  EXPECT_TRUE(edge_of(x)["refused"].is_null());
  EXPECT_FALSE(row_of(x).contains("not_listening"));
  EXPECT_TRUE(edge_of(x)["build"].is_null()) << x.dump();

  // The edge's build: recorded as sent, shown on exposure; a malformed one is refused.
  const Json build = {{"version", "0.1.0"}, {"commit", "0123456789ab"}};
  for (const auto& bad : std::vector<Json>{{{"version", "0.1.0"}}, {{"version", 1}, {"commit", "x"}},
                                           {{"version", ""}, {"commit", "x"}}, {{"version", std::string(65, '1')}, {"commit", "x"}},
                                           {{"version", "0.1.0"}, {"commit", "x"}, {"os", "linux"}}, "0.1.0"})
    EXPECT_EQ(post({{"version", version}, {"unbound", none}, {"build", bad}}), 400) << bad.dump();
  EXPECT_EQ(post({{"version", version}, {"unbound", none}, {"build", build}}), 200);
  EXPECT_EQ(edge_of(exposure())["build"], build);
  // Replaced by an edge that does not report its build: unknown again, not the old one's.
  EXPECT_EQ(post({{"version", version}, {"unbound", none}}), 200);
  EXPECT_TRUE(edge_of(exposure())["build"].is_null());

  // A newer snapshot the edge refused (an edge older than the control plane, say): behind, and why.
  client().call("POST", kEnvs + "seen/endpoints", Json{{"port", 6001}, {"process", "web"}}, new_id("idem"));
  const auto next = edge.call("GET", "/v1/edge/config?after=" + std::to_string(version))["version"].get<std::int64_t>();
  ASSERT_GT(next, version);
  for (const auto& bad : std::vector<Json>{{{"version", next}}, {{"version", -1}, {"error", "x"}},
                                           {{"version", next}, {"error", 1}}, {{"version", next}, {"error", "x"}, {"at", 1}}})
    EXPECT_EQ(post({{"version", version}, {"unbound", none}, {"refused", bad}}), 400) << bad.dump();
  EXPECT_EQ(post({{"version", version}, {"unbound", none}, {"refused", {{"version", next}, {"error", "unknown field \"x\""}}}}), 200);
  x = exposure();
  EXPECT_EQ(edge_of(x)["state"], "behind");
  EXPECT_EQ(edge_of(x)["version"], next);
  EXPECT_EQ(edge_of(x)["applied_version"], version);
  EXPECT_EQ(edge_of(x)["refused"], (Json{{"version", next}, {"error", "unknown field \"x\""}}));
  // Applied after all: current again, the refusal gone.
  EXPECT_EQ(post({{"version", next}, {"unbound", none}}), 200);
  x = exposure();
  EXPECT_EQ(edge_of(x)["state"], "current");
  EXPECT_TRUE(edge_of(x)["refused"].is_null());
  EXPECT_EQ(edge_of(x)["taken"], true);
  EXPECT_EQ(edge_of(x)["wanted_version"], next);
  auto pending = [&] { return client().call("GET", kEnvs + "seen/status")["edges_pending"]; };
  auto has = [](const Json& hosts, const std::string& h) { return std::find(hosts.begin(), hosts.end(), Json(h)) != hosts.end(); };
  EXPECT_FALSE(has(pending(), "status-host")) << pending().dump();

  // A change the edge has not asked for yet: behind, wanting the next version, and `wait` waits for it.
  client().call("POST", kEnvs + "seen/endpoints", Json{{"port", 6002}, {"process", "web"}}, new_id("idem"));
  x = exposure();
  EXPECT_EQ(edge_of(x)["state"], "behind");
  EXPECT_EQ(edge_of(x)["taken"], false);
  EXPECT_EQ(edge_of(x)["version"], next);
  EXPECT_EQ(edge_of(x)["wanted_version"], next + 1);
  EXPECT_TRUE(has(pending(), "status-host"));
  EXPECT_EQ(client().call("GET", kEnvs + "seen/status?traffic=false").count("edges_pending"), 0u);  // the rollout alone
  // Asked for, not applied yet: still pending.
  const auto third = edge.call("GET", "/v1/edge/config?after=" + std::to_string(next))["version"].get<std::int64_t>();
  EXPECT_EQ(third, next + 1);
  EXPECT_EQ(edge_of(exposure())["wanted_version"], third);
  EXPECT_TRUE(has(pending(), "status-host"));
  // Refused: not waited for (it would never come), a problem instead.
  EXPECT_EQ(post({{"version", next}, {"unbound", none}, {"refused", {{"version", third}, {"error", "unknown field \"y\""}}}}), 200);
  EXPECT_FALSE(has(pending(), "status-host"));
  // Applied: current and taken.
  EXPECT_EQ(post({{"version", third}, {"unbound", none}}), 200);
  x = exposure();
  EXPECT_EQ(edge_of(x)["state"], "current");
  EXPECT_EQ(edge_of(x)["taken"], true);
  EXPECT_FALSE(has(pending(), "status-host"));
  // A change again, and the edge stops asking: absent is not waited for either.
  client().call("POST", kEnvs + "seen/endpoints", Json{{"port", 6003}, {"process", "web"}}, new_id("idem"));
  EXPECT_TRUE(has(pending(), "status-host"));
  // An edge that stops asking is absent after 90 s.
  {
    pqxx::connection c(platform_->conninfo);
    pqxx::work tx(c);
    tx.exec_params("UPDATE core.edge_config SET seen_at = now() - interval '5 minutes'"
                   " WHERE host_id = (SELECT id FROM core.hosts WHERE name = $1)",
                   "status-host");
    tx.commit();
  }
  EXPECT_EQ(edge_of(exposure())["state"], "absent");
  EXPECT_FALSE(has(pending(), "status-host"));
  // Its next poll says it is back, with the change to take.
  const auto fourth =
      edge.call("GET", "/v1/edge/config?after=" + std::to_string(third) + "&wait=0s")["version"].get<std::int64_t>();
  EXPECT_EQ(edge_of(exposure())["state"], "behind");
  EXPECT_TRUE(has(pending(), "status-host"));
  EXPECT_EQ(post({{"version", fourth}, {"unbound", none}}), 200);
  EXPECT_EQ(edge_of(exposure())["state"], "current");
  EXPECT_FALSE(has(pending(), "status-host"));
}

// `status` names what of the env an edge cannot listen for, an endpoint's address or the shared TLS
// listener of its routes, in words (traffic) and as data (not_listening, which `wait` fails on).
TEST_F(NetworkTest, StatusSaysWhichEndpointAndRouteAnEdgeCannotListenFor) {
  const auto credential = enrol_host("tls-host");
  api::Client edge(platform_->url, credential);
  deploy("tlsheld", manifest(route("held.example.com") + kEndpoint));
  const auto v6 = ips("tlsheld")[0]["address"].get<std::string>();
  const auto version = edge.call("GET", "/v1/edge/config")["version"].get<std::int64_t>();
  const Json unbound = Json::array({{{"address", "::1"}, {"port", 8443}, {"kind", "tls"}, {"error", "Address already in use"}},
                                    {{"address", v6}, {"port", 5432}, {"kind", "tcp"}, {"error", "Permission denied"}}});
  ASSERT_EQ(edge.request("POST", "/v1/edge/status", Json{{"version", version}, {"unbound", unbound}}.dump()).status, 200);
  auto st = client().call("GET", kEnvs + "tlsheld/status");
  Json mine = Json::array();
  for (const auto& n : st["not_listening"])
    if (n["host"] == "tls-host") mine.push_back(n);
  ASSERT_EQ(mine.size(), 2u) << st.dump();
  EXPECT_EQ(mine[0], (Json{{"kind", "endpoint"}, {"name", "db"}, {"address", v6}, {"port", 5432}, {"host", "tls-host"},
                          {"error", "Permission denied"}}));
  EXPECT_EQ(mine[1]["kind"], "route");
  EXPECT_EQ(mine[1]["hostnames"], Json::array({"held.example.com"}));
  EXPECT_EQ(mine[1]["address"], "::1");
  EXPECT_EQ(mine[1]["port"], 8443);
  auto said = [&](const std::string& line) {
    for (const auto& t : st["traffic"])
      if (t.get<std::string>().rfind(line, 0) == 0) return true;
    return false;
  };
  EXPECT_TRUE(said("endpoint db: [" + v6 + "]:5432 is not listening on host tls-host: Permission denied")) << st.dump();
  EXPECT_TRUE(said("route held.example.com: the shared TLS listener [::1]:8443 is not listening on host tls-host: "
                   "Address already in use"))
      << st.dump();
  // The rollout alone leaves all of it out.
  auto rollout = client().call("GET", kEnvs + "tlsheld/status?traffic=false");
  EXPECT_FALSE(rollout.contains("not_listening") || rollout.contains("traffic") || rollout.contains("edges_pending"));
  // Bound: nothing said.
  ASSERT_EQ(edge.request("POST", "/v1/edge/status", Json{{"version", version}, {"unbound", Json::array()}}.dump()).status,
            200);
  st = client().call("GET", kEnvs + "tlsheld/status");
  for (const auto& n : st["not_listening"]) EXPECT_NE(n["host"], "tls-host") << st.dump();
}

// A small pool, many envs asking at once: every address goes to one env, and the rest hear "capacity".
TEST(NetworkPool, TheScarceIpv4PoolIsNeverAllocatedTwice) {
  harness::Platform p;
  configure(p.conninfo, {"", "198.51.100.0/29", "", 200});  // 6 usable addresses (.1 to .6)
  auto c = p.client();
  std::vector<std::string> envs;
  for (int i = 0; i < 10; ++i) envs.push_back("e" + std::to_string(i));
  harness::create_envs(c, envs);
  std::vector<std::future<api::ClientResponse>> asks;
  for (const auto& e : envs)
    asks.push_back(std::async(std::launch::async, [&p, e] {
      return p.client().request("POST", kEnvs + e + "/ips/ipv4", Json{{"accept_price_cents_month", 200}}.dump(),
                                {{"Idempotency-Key", new_id("idem")}});
    }));
  std::set<std::string> addresses;
  int ok = 0, full = 0;
  for (auto& f : asks) {
    auto r = f.get();
    if (r.status == 200) {
      ++ok;
      addresses.insert(Json::parse(r.body)["address"]["address"].get<std::string>());
    } else {
      EXPECT_EQ(r.status, 409) << r.body;
      EXPECT_EQ(Json::parse(r.body)["code"], "capacity") << r.body;
      ++full;
    }
  }
  EXPECT_EQ(ok, 6);
  EXPECT_EQ(full, 4);
  EXPECT_EQ(addresses, (std::set<std::string>{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4",
                                              "198.51.100.5", "198.51.100.6"}));
  // A released address goes to the next env that asks.
  std::string holder, freed;
  for (const auto& e : envs) {
    auto list = c.call("GET", kEnvs + e + "/ips")["addresses"];
    if (!list.empty()) {
      holder = e;
      freed = list[0]["address"];
      break;
    }
  }
  c.call("DELETE", kEnvs + holder + "/ips/ipv4", std::nullopt, new_id("idem"));
  for (const auto& e : envs) {
    if (e == holder || !c.call("GET", kEnvs + e + "/ips")["addresses"].empty()) continue;
    auto got = c.call("POST", kEnvs + e + "/ips/ipv4", Json{{"accept_price_cents_month", 200}}, new_id("idem"));
    EXPECT_EQ(got["address"]["address"], freed);
    break;
  }
  pqxx::connection conn(p.conninfo);
  pqxx::work tx(conn);
  EXPECT_EQ(tx.exec("SELECT count(*) FROM core.ip_allocations WHERE released_at IS NULL")[0][0].as<int>(), 6);
}

TEST(NetworkPool, PoolsAreCheckedWhenConfigured) {
  harness::Platform p;
  auto bad = [&](const api::Pools& pools) {
    return error_of([&] { configure(p.conninfo, pools); }).first;
  };
  EXPECT_EQ(bad({"not-a-cidr", "", "", 0}), ErrorCode::invalid_request);
  EXPECT_EQ(bad({"192.0.2.0/24", "", "", 0}), ErrorCode::invalid_request);  // an IPv4 prefix as the IPv6 pool
  EXPECT_EQ(bad({"", "2001:db8::/64", "", 0}), ErrorCode::invalid_request);
  // Without an IPv4 pool the add-on is not offered, and says so.
  harness::create_envs(p.client(), {"x"});
  auto r = p.client().request("GET", kEnvs + "x/ips/ipv4-quote");
  EXPECT_EQ(r.status, 412);
  EXPECT_NE(r.body.find("no IPv4 pool"), std::string::npos) << r.body;
}

// The scheduler gives each placed instance its own address from the instance pool; when the pool runs
// out, the rest are unplaced with that reason instead of failing the pass.
TEST_F(NetworkTest, InstancesGetPrivateAddressesAndAFullPoolLeavesTheRestUnplacedWithWhy) {
  harness::Platform p;
  configure(p.conninfo, {"fd00:71::/120", "", "10.78.0.0/30", 0});  // two instance addresses: .1 and .2
  harness::create_envs(p.client(), {"sched"});
  harness::enrol_roomy_host(p.conninfo, "big");
  p.client().call("POST", kEnvs + "sched/deploys",
                  Json{{"image", image()},
                       {"manifest", "schema_version = 1\n[app]\nname = \"api\"\n[processes.web]\ncount = 3\n"
                                    "memory = \"128MiB\"\n"}},
                  new_id("idem"), std::chrono::seconds(60));
  harness::TestScheduler scheduler(p.conninfo);
  auto r = scheduler.pass();
  EXPECT_EQ(r.placed, 2);
  EXPECT_EQ(r.unschedulable, 1);
  pqxx::connection c(p.conninfo);
  pqxx::work tx(c);
  std::set<std::string> addresses;
  for (const auto& row : tx.exec("SELECT host(address) FROM core.instances")) addresses.insert(row[0].as<std::string>());
  EXPECT_EQ(addresses, (std::set<std::string>{"10.78.0.1", "10.78.0.2"}));
  auto why = tx.exec("SELECT reason, missing FROM core.unschedulable");
  ASSERT_EQ(why.size(), 1u);
  EXPECT_NE(why[0][0].as<std::string>().find("instance address pool is full"), std::string::npos) << why[0][0].c_str();
  EXPECT_EQ(why[0][1].as<int>(), 1);
  // The placed instances carry their addresses to the agent and to the events.
  EXPECT_EQ(tx.exec("SELECT count(*) FROM events WHERE type = 'InstancePlaced' AND data->>'address' LIKE '10.78.0.%'")[0][0]
                .as<int>(), 2);
}

// The edge states compute every host's snapshot from one look at what is exposed: each must be exactly
// the snapshot that host's edge gets (host_edge_snapshot), its own host's backends and no other's.
TEST_F(NetworkTest, EveryHostsSnapshotFromOneLookIsTheOneItsEdgeGets) {
  harness::Platform p(tls_on_8443);
  configure(p.conninfo, {"fd00:72::/120", "", "10.79.0.0/24", 0});
  harness::create_envs(p.client(), {"spread"});
  harness::enrol_roomy_host(p.conninfo, "h1");
  harness::enrol_roomy_host(p.conninfo, "h2");
  p.client().call("POST", kEnvs + "spread/deploys",
                  Json{{"image", image()},
                       {"manifest", "schema_version = 1\n[app]\nname = \"api\"\n[processes.web]\ncount = 4\n"
                                    "memory = \"128MiB\"\n" + route("spread.example.com") + kEndpoint}},
                  new_id("idem"), std::chrono::seconds(60));
  harness::TestScheduler scheduler(p.conninfo);
  ASSERT_EQ(scheduler.pass().placed, 4);
  pqxx::connection c(p.conninfo);
  {
    pqxx::work tx(c);
    ASSERT_EQ(tx.exec("SELECT count(DISTINCT host_id) FROM core.instances")[0][0].as<int>(), 2) << "spread over both";
    tx.exec("UPDATE core.instances SET state = 'running', health = 'healthy'");  // as their agents would report
    for (const auto& h : tx.exec("SELECT id FROM core.hosts WHERE name IN ('h1', 'h2')"))
      tx.exec_params("INSERT INTO core.edge_config (host_id, version, content_hash) VALUES ($1, 1, $2)",
                     h[0].as<std::string>(),
                     api::host_edge_snapshot(tx, h[0].as<std::string>(), {{"::1", 8443}, {"127.0.0.1", 8443}}).hash);
    tx.commit();
  }
  pqxx::work tx(c);
  const std::vector<api::ListenAddress> tls = {{"::1", 8443}, {"127.0.0.1", 8443}};
  auto asked = api::edges_asked_for_present(tx, tls, api::exposed(tx, ""));
  ASSERT_EQ(asked.size(), 2u);
  std::set<std::string> hashes;
  for (const auto& [host, same] : asked) {
    EXPECT_TRUE(same) << host;
    hashes.insert(api::host_edge_snapshot(tx, host, tls).hash);
  }
  EXPECT_EQ(hashes.size(), 2u) << "each host's snapshot holds its own backends";
  // Another host's content on record for h1: not the present one.
  tx.exec("UPDATE core.edge_config SET content_hash = 'x' WHERE host_id = (SELECT id FROM core.hosts WHERE name = 'h1')");
  asked = api::edges_asked_for_present(tx, tls, api::exposed(tx, ""));
  int present = 0;
  for (const auto& [host, same] : asked) present += same;
  EXPECT_EQ(present, 1);
}

// Deploys one web instance with the db endpoint to `env` and places it.
void deploy_one_web(harness::Platform& p, harness::TestScheduler& scheduler, const std::string& env,
                    const std::string& image) {
  p.client().call("POST", kEnvs + env + "/deploys",
                  Json{{"image", image},
                       {"manifest", "schema_version = 1\n[app]\nname = \"api\"\n[processes.web]\ncount = 1\n"
                                    "memory = \"128MiB\"\n" + kEndpoint}},
                  new_id("idem"), std::chrono::seconds(60));
  ASSERT_EQ(scheduler.pass().placed, 1);
}

// Before SIGTERM, the agent asks whether the edge on its host still sends new connections to an instance
// asked to stop: not while the edge has not taken the stop, yes once it serves the state without it.
TEST_F(NetworkTest, AnInstanceAskedToStopIsDrainedOnceItsHostsEdgeLeavesItOut) {
  harness::Platform p(tls_on_8443);
  configure(p.conninfo, {"fd00:73::/120", "", "10.80.0.0/24", 0});
  harness::create_envs(p.client(), {"drain"});
  const auto credential = harness::enrol_roomy_host(p.conninfo, "d1");
  const auto other = harness::enrol_roomy_host(p.conninfo, "d2");
  api::Client host(p.url, credential);
  harness::TestScheduler scheduler(p.conninfo);
  ASSERT_NO_FATAL_FAILURE(deploy_one_web(p, scheduler, "drain", image()));
  auto sql = [&](const std::string& q) { return harness::exec_sql(p.conninfo, q); };
  const auto id = sql("SELECT id FROM core.instances")[0][0].as<std::string>();
  const auto on = sql("SELECT h.name FROM core.instances i JOIN core.hosts h ON h.id = i.host_id")[0][0].as<std::string>();
  api::Client agent(p.url, on == "d1" ? credential : other);
  api::Client stranger(p.url, on == "d1" ? other : credential);
  sql("UPDATE core.instances SET state = 'running', health = 'healthy'");  // as its agent would report
  auto drain = [&] { return agent.call("GET", "/v1/agent/instances/" + id + "/drain"); };

  // Still to run: the edge may send it connections.
  EXPECT_EQ(drain()["drained"], false);
  // An instance of another host is not found there.
  EXPECT_EQ(stranger.request("GET", "/v1/agent/instances/" + id + "/drain").status, 404);
  // The edge of its host serves it.
  auto version = agent.call("GET", "/v1/edge/config")["version"].get<std::int64_t>();
  ASSERT_EQ(agent.request("POST", "/v1/edge/status", Json{{"version", version}, {"unbound", Json::array()}}.dump()).status,
            200);
  ASSERT_EQ(agent.call("GET", "/v1/edge/config")["endpoints"][0]["backends"].size(), 1u);

  // Asked to stop: not drained until the edge has taken the stop.
  p.client().call("POST", kEnvs + "drain/scale", Json{{"processes", {{"web", {{"count", 0}}}}}}, new_id("idem"));
  scheduler.pass();
  ASSERT_EQ(sql("SELECT desired FROM core.instances")[0][0].as<std::string>(), "stop");
  auto d = drain();
  EXPECT_EQ(d["drained"], false) << d.dump();
  EXPECT_NE(d.value("why", "").find("has not taken the change yet"), std::string::npos) << d.dump();
  auto next = agent.call("GET", "/v1/edge/config?after=" + std::to_string(version));
  EXPECT_TRUE(next["endpoints"][0]["backends"].empty()) << next.dump();
  EXPECT_EQ(drain()["drained"], false) << "handed over, not applied yet";
  ASSERT_EQ(agent.request("POST", "/v1/edge/status", Json{{"version", next["version"]}, {"unbound", Json::array()}}.dump())
                .status,
            200);
  d = drain();
  EXPECT_EQ(d["drained"], true) << d.dump();
  EXPECT_NE(d.value("why", "").find("no longer sends it new connections"), std::string::npos) << d.dump();

  // An edge that stopped asking is not waited for.
  sql("UPDATE core.edge_config SET seen_at = now() - interval '5 minutes'");
  p.client().call("POST", kEnvs + "drain/endpoints", Json{{"port", 7777}, {"process", "web"}}, new_id("idem"));
  d = drain();
  EXPECT_EQ(d["drained"], true) << d.dump();
  EXPECT_NE(d.value("why", "").find("not waited for"), std::string::npos) << d.dump();
}

// A healthy instance that refuses the edge (nothing listens on the endpoint's internal port): the edge
// says so in its report, and status, exposure and the endpoint list name the instance and ask whether
// the process listens there. Only the org's own rows carry it; a backend that is gone is not named.
TEST_F(NetworkTest, ABackendThatRefusesTheEdgeIsNamedInStatusAndExposure) {
  harness::Platform p(tls_on_8443);
  configure(p.conninfo, {"fd00:74::/120", "", "10.81.0.0/24", 0});
  harness::create_envs(p.client(), {"refuse"});
  const auto credential = harness::enrol_roomy_host(p.conninfo, "r1");
  api::Client edge(p.url, credential);
  harness::TestScheduler scheduler(p.conninfo);
  ASSERT_NO_FATAL_FAILURE(deploy_one_web(p, scheduler, "refuse", image()));
  harness::exec_sql(p.conninfo, "UPDATE core.instances SET state = 'running', health = 'healthy'");
  const auto name = harness::exec_sql(p.conninfo, "SELECT name FROM core.instances")[0][0].as<std::string>();
  auto config = edge.call("GET", "/v1/edge/config");
  const auto& target = config["endpoints"][0];
  ASSERT_EQ(target["backends"].size(), 1u) << config.dump();
  const auto address = target["backends"][0]["address"].get<std::string>();
  auto report = [&](const Json& unreachable) {
    return edge.request("POST", "/v1/edge/status",
                        Json{{"version", config["version"]}, {"unbound", Json::array()}, {"unreachable", unreachable}}.dump());
  };
  // What the edge reports is checked like everything it sends.
  for (const auto& bad : {Json::array({{{"target", target["id"]}, {"address", address}, {"port", 5432}}}),
                          Json::array({{{"target", target["id"]}, {"address", address}, {"port", 5432},
                                        {"error", "Connection refused"}, {"failures", 0}}}),
                          Json::array({{{"target", target["id"]}, {"address", address}, {"port", 5432},
                                        {"error", "x"}, {"failures", 1}, {"extra", 1}}})}) {
    auto r = report(bad);
    EXPECT_EQ(r.status, 400) << bad.dump() << r.body;
  }
  ASSERT_EQ(report(Json::array({{{"target", target["id"]}, {"address", address}, {"port", 5432},
                                 {"error", "Connection refused"}, {"failures", 3}},
                                {{"target", target["id"]}, {"address", "10.81.0.99"}, {"port", 5432},
                                 {"error", "Connection refused"}, {"failures", 1}}}))
                .status,
            200);
  auto st = p.client().call("GET", kEnvs + "refuse/status");
  ASSERT_EQ(st["unreachable"].size(), 1u) << st.dump();  // 10.81.0.99 is no backend of it
  const auto& u = st["unreachable"][0];
  EXPECT_EQ(u["instance"], name);
  EXPECT_EQ(u["host"], "r1");
  EXPECT_EQ(u["failures"], 3);
  const auto text = "endpoint db: the edge on host r1 cannot connect to instance " + name + " (" + address +
                    ":5432): Connection refused (3 times in a row); is process web listening on port 5432";
  EXPECT_EQ(u["text"].get<std::string>().rfind(text, 0), 0u) << u.dump();
  bool said = false;
  for (const auto& t : st["traffic"]) said |= t.get<std::string>().rfind(text, 0) == 0;
  EXPECT_TRUE(said) << st.dump();
  auto exposure = p.client().call("GET", "/v1/orgs/acme/exposure");
  ASSERT_FALSE(exposure["exposed"].empty());
  for (const auto& row : exposure["exposed"]) EXPECT_EQ(row["unreachable"][0]["instance"], name) << row.dump();
  for (const auto& e : exposure["edges"]) EXPECT_FALSE(e.contains("unreachable")) << "every org's backends: " << e.dump();
  auto endpoints = p.client().call("GET", kEnvs + "refuse/endpoints");
  EXPECT_EQ(endpoints["endpoints"][0]["unreachable"][0]["instance"], name) << endpoints.dump();
  // It listens now: the edge reports nothing, and nothing is said.
  ASSERT_EQ(report(Json::array()).status, 200);
  st = p.client().call("GET", kEnvs + "refuse/status");
  EXPECT_TRUE(st["unreachable"].empty()) << st.dump();
}

}  // namespace
