// Issue 5's end-to-end story against `platformd dev` (its edge, its agent's runc sandboxes, this
// platform's own address pools): the sample app answers through its endpoint at its env's IPv6 address,
// over IPv4 only once the add-on is allocated (its price accepted), bytes exact both ways; `exposure`
// says what is exposed; CLI endpoints open and close; PROXY v2 reaches the instance with the client's
// address; a long-lived connection outlives config changes;
// a released IPv4 stops answering; psql shows the allocations.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "ingress/proxy_v2.h"
#include "tests/ingress/loopback.h"
#include "tests/support/dev_platform.h"

using namespace platform;
using namespace platform::e2e;
using ingress::testing::connect_to;
using ingress::testing::echo_through;
using ingress::testing::round_trip;
using ingress::testing::sha256;

namespace {

const std::string kIn = " --org dev --project net --app echo --env prod";

// The exposure rows of the env, once `healthy` backends serve them (bounded wait).
Json exposed_rows(int healthy, std::size_t rows) {
  Json out;
  for (int i = 0; i < 300; ++i) {
    auto r = cli("-o json exposure --org dev");
    if (r.exit == 0) {
      out = Json::array();
      const auto all = one_json(r);  // named: a range over a member of a temporary would dangle
      for (const auto& x : all["exposed"])
        if (x["target"]["project"] == "net") out.push_back(x);
      bool ready = out.size() == rows;
      for (const auto& x : out) ready &= x["backends"]["healthy"] == healthy;
      if (ready) return out;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return out;
}

// A greeting through ip:port (the sample app answers GET / with "hello from <instance>").
std::string greeting(const std::string& ip, int port) { return echo_through(ip, port, "GET / HTTP/1.0\r\n\r\n"); }

// Until `ip:port` answers (or, with `answers` false, refuses), bounded: the edge applies a new config
// within a long poll's round trip.
bool eventually(const std::string& ip, int port, bool answers) {
  for (int i = 0; i < 100; ++i) {
    const bool ok = greeting(ip, port).find(" from ") != std::string::npos;  // "hello from web-1", or the GREETING set
    if (ok == answers) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

}  // namespace

TEST(NetworkEndToEnd, TheSampleAppAnswersOverIpv6AndOverIpv4OnlyWithTheAddOn) {
  if (!can_run_sandboxes()) GTEST_SKIP() << "needs root and runc (/usr/sbin/runc) to run sandboxes";
  DevPlatform dev;
  const auto logs = [&] {
    return run("tail -20 " + (dev.root() / "state/edge.log").string()).out +
           run("tail -20 " + (dev.root() / "state/agent.log").string()).out;
  };
  // For a connection through the edge that failed: what the edge counted and served, the routes to the
  // instances, and the logs.
  const auto edge_state = [&] {
    return echo_through("127.0.0.1", dev.edge_metrics_port(), "GET /metrics HTTP/1.0\r\n\r\n") +
           cli("-o json exposure --org dev").out + run("ip route show " + dev.instance_pool()).out +
           run("ip -6 route show table local " + dev.ipv6_pool()).out + logs();
  };
  auto pushed = run(std::string("SAMPLE_ECHO=") + SAMPLE_ECHO_BIN + " " + SOURCE_DIR + "/scripts/sample-image " +
                    dev.registry());
  ASSERT_EQ(pushed.exit, 0) << pushed.out;
  ASSERT_EQ(cli("project create net --org dev").exit, 0);
  ASSERT_EQ(cli("app create echo --org dev --project net").exit, 0);
  ASSERT_EQ(cli("env create prod --org dev --project net --app echo").exit, 0);
  auto d = cli("-o json deploy --image " + dev.registry() + "/sample/echo:v1 --manifest " + SOURCE_DIR +
               "/samples/echo/platform.toml" + kIn);
  ASSERT_EQ(d.exit, 0) << d.out;
  auto receipt = one_json(d);
  ASSERT_EQ(receipt["addresses"].size(), 1u) << d.out;
  const auto v6 = receipt["addresses"][0]["address"].get<std::string>();
  EXPECT_EQ(receipt["addresses"][0]["family"], "ipv6");
  EXPECT_EQ(v6.rfind(dev.ipv6_pool().substr(0, dev.ipv6_pool().find("::") + 2), 0), 0u) << v6;
  ASSERT_EQ(cli("wait --timeout 120s" + kIn).exit, 0) << logs();

  // exposure: one row, IPv6, raw TCP port 7000 to web:8080, both instances healthy behind it.
  auto rows = exposed_rows(2, 1);
  ASSERT_EQ(rows.size(), 1u) << rows.dump() << logs();
  EXPECT_EQ(rows[0]["family"], "ipv6");
  EXPECT_EQ(rows[0]["address"], v6);
  EXPECT_EQ(rows[0]["port"], 7000);
  EXPECT_EQ(rows[0]["protocol"], "tcp");
  EXPECT_EQ(rows[0]["target"]["process"], "web");
  EXPECT_EQ(rows[0]["backends"]["total"], 2);
  auto table = cli("exposure --org dev");
  EXPECT_NE(table.out.find("net/echo/prod web:8080"), std::string::npos) << table.out;
  // --project, --app and --env narrow it; a name that does not exist is not found (exit 7), not an empty list.
  auto narrowed = one_json(cli("-o json exposure --org dev --project net --app echo --env prod"));
  ASSERT_EQ(narrowed["exposed"].size(), 1u) << narrowed.dump();
  EXPECT_EQ(narrowed["exposed"][0]["target"]["env"], "prod");
  EXPECT_FALSE(narrowed["edges"].empty());
  EXPECT_EQ(cli("exposure --org dev --project net --app echo --env staging").exit, 7);
  EXPECT_EQ(cli("exposure --org dev --project nope").exit, 7);

  // The app answers over IPv6, from both instances in turn; bytes are exact both ways. `wait` returned once
  // the edge served the release, so the first connection is answered.
  ASSERT_NE(greeting(v6, 7000).find("hello from"), std::string::npos) << logs();
  std::set<std::string> answered;
  for (int i = 0; i < 6; ++i) {
    auto g = greeting(v6, 7000);
    if (auto at = g.find("hello from "); at != std::string::npos) answered.insert(g.substr(at));
  }
  EXPECT_EQ(answered.size(), 2u) << "round robin over both healthy instances";
  std::string payload(8 << 20, '\0');
  std::mt19937 rng(7);
  for (auto& c : payload) c = static_cast<char>(rng());
  payload[0] = 'x';  // not "GET /": the sample app echoes it
  {
    int fd = connect_to(v6, 7000);
    ASSERT_GE(fd, 0);
    auto back = round_trip(fd, payload);
    ::close(fd);
    EXPECT_EQ(back.size(), payload.size());
    EXPECT_EQ(sha256(back), sha256(payload));
  }

  // No IPv4 without the add-on: the pool's address does not answer, and allocating it needs the price
  // accepted (exit 6 when not on a terminal without --yes).
  const auto v4_pool = dev.ipv4_pool();
  const auto first_v4 = v4_pool.substr(0, v4_pool.rfind('.')) + ".1";
  EXPECT_LT(connect_to(first_v4, 7000), 0);
  auto refused = cli("-o json ip allocate-v4" + kIn + " < /dev/null");
  EXPECT_EQ(refused.exit, 6) << refused.out;
  EXPECT_NE(one_json(refused)["error"]["message"].get<std::string>().find("/month"), std::string::npos) << refused.out;
  auto v4r = cli("-o json ip allocate-v4 --yes --wait" + kIn);
  ASSERT_EQ(v4r.exit, 0) << v4r.out;
  const auto v4 = one_json(v4r)["address"]["address"].get<std::string>();
  EXPECT_EQ(v4, first_v4);
  ASSERT_NE(greeting(v4, 7000).find("hello from"), std::string::npos) << "--wait returned: served" << logs();
  EXPECT_EQ(exposed_rows(2, 2).size(), 2u);

  // A long-lived connection outlives config changes: CLI endpoints made and deleted while it is open.
  int lived = connect_to(v6, 7000);
  ASSERT_GE(lived, 0);
  ASSERT_EQ(::send(lived, "x1", 2, MSG_NOSIGNAL), 2);
  for (int i = 0; i < 3; ++i) {
    auto made = cli("-o json endpoint create --port 7001 --internal-port 8080 --process web" + kIn);
    ASSERT_EQ(made.exit, 0) << made.out;
    EXPECT_TRUE(eventually(v6, 7001, true)) << logs();
    ASSERT_EQ(cli("endpoint delete web-7001" + kIn).exit, 0);
    EXPECT_TRUE(eventually(v6, 7001, false)) << logs();
  }
  ASSERT_EQ(::send(lived, "x2", 2, MSG_NOSIGNAL), 2);
  ::shutdown(lived, SHUT_WR);
  std::string back;
  char buf[64];
  for (ssize_t n; (n = ::recv(lived, buf, sizeof buf, 0)) > 0;) back.append(buf, static_cast<std::size_t>(n));
  ::close(lived);
  EXPECT_EQ(back, "x1x2");

  // PROXY v2 through the whole stack: an endpoint that asks for it, to the sample app (which echoes what
  // it gets), so the header the instance received comes back: the client's own address and port first.
  // With --wait it returns once the edge serves it: the first connection right after is answered.
  auto pp = cli("-o json endpoint create pp --port 7002 --internal-port 8080 --process web --proxy-protocol v2 --wait" + kIn);
  ASSERT_EQ(pp.exit, 0) << pp.out;
  EXPECT_EQ(one_json(pp)["endpoint"]["name"], "pp");  // the name as a positional, like every create
  EXPECT_TRUE(one_json(pp)["served"]["edges_pending"].empty()) << pp.out;
  EXPECT_TRUE(one_json(pp)["served"]["unreachable"].empty()) << pp.out;  // its probe had a LOCAL header
  // (the greeting check does not apply: the app sees the header first)
  ASSERT_FALSE(echo_through(v6, 7002, "x").empty()) << logs();
  // A process the release does not run is refused (exit 2), naming the ones it runs.
  auto nope = cli("-o json endpoint create --port 7003 --process wbe" + kIn);
  EXPECT_EQ(nope.exit, 2) << nope.out;
  EXPECT_NE(nope.out.find("Did you mean \\\"web\\\"?"), std::string::npos) << nope.out;
  // An internal port the process does not listen on: served (exit 0), and every instance is named as
  // refusing the edge, with the question to ask; the endpoint's description says the same.
  auto deaf = cli("-o json endpoint create deaf --port 7009 --internal-port 9 --process web --wait" + kIn);
  ASSERT_EQ(deaf.exit, 0) << deaf.out;
  const auto refusing = one_json(deaf)["served"]["unreachable"];
  EXPECT_FALSE(refusing.empty()) << deaf.out;
  EXPECT_EQ(refusing.size(), one_json(cli("-o json instance list" + kIn))["instances"].size()) << deaf.out;
  for (const auto& u : refusing) {
    EXPECT_EQ(u["error"], "Connection refused") << u.dump();
    EXPECT_NE(u["text"].get<std::string>().find("is process web listening on port 9 "), std::string::npos) << u.dump();
  }
  EXPECT_EQ(one_json(cli("-o json endpoint describe deaf" + kIn))["unreachable"].size(), refusing.size());
  EXPECT_FALSE(one_json(deaf).contains("note")) << "the internal port was given";
  ASSERT_EQ(cli("-o json endpoint delete deaf --wait" + kIn).exit, 0);
  // Left to default to --port while the process's health check uses 8080: the receipt says so, with the fix.
  auto guessed = cli("-o json endpoint create --port 7010 --process web" + kIn);
  ASSERT_EQ(guessed.exit, 0) << guessed.out;
  EXPECT_NE(one_json(guessed).value("note", "").find("create it again with --internal-port 8080"), std::string::npos)
      << guessed.out;
  ASSERT_EQ(cli("-o json endpoint delete web-7010" + kIn).exit, 0);
  {
    int fd = connect_to(v6, 7002);
    ASSERT_GE(fd, 0);
    sockaddr_in6 me{};
    socklen_t len = sizeof me;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&me), &len);
    const auto back = round_trip(fd, "hello through PROXY v2");
    ::close(fd);
    auto parsed = ingress::parse_proxy_v2(
        std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(back.data()), back.size()));
    ASSERT_EQ(parsed.status, ingress::ProxyParse::Status::ok) << parsed.error;
    const auto client = ingress::SocketAddress::from(reinterpret_cast<const sockaddr*>(&me));
    EXPECT_EQ(parsed.header.source.address(), client.address());
    EXPECT_EQ(parsed.header.source.port, client.port);
    EXPECT_EQ(parsed.header.destination.address(), ingress::SocketAddress::parse(v6, 7002)->address());
    EXPECT_EQ(parsed.header.destination.port, 7002);
    EXPECT_EQ(back.substr(parsed.length), "hello through PROXY v2");
  }
  auto described = one_json(cli("-o json endpoint describe pp" + kIn));
  EXPECT_EQ(described["proxy_protocol"], "v2");

  // A port another process holds on the host: the edge serves everything else, says which row it does
  // not listen for and why, and binds it once it is free.
  {
    int held = ::socket(AF_INET6, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(held, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(7004);
    ASSERT_EQ(::inet_pton(AF_INET6, v6.c_str(), &a.sin6_addr), 1);
    ASSERT_EQ(::bind(held, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
    ASSERT_EQ(::listen(held, 1), 0);
    // --wait says so: made, but not listening (exit 6), once the edge has taken it.
    auto created = cli("-o json endpoint create held --port 7004 --internal-port 8080 --process web --wait" + kIn);
    EXPECT_EQ(created.exit, 6) << created.out;
    const auto error = one_json(created)["error"];
    EXPECT_EQ(error.value("message", "").rfind("endpoint held: [" + v6 + "]:7004 is not listening on host ", 0), 0u)
        << created.out;
    EXPECT_NE(error.value("hint", "").find("The change itself was made: operation op_"), std::string::npos) << created.out;
    auto row_7004 = [&] {
      auto all = one_json(cli("-o json exposure --org dev"));
      for (const auto& x : all["exposed"])
        if (x["target"]["project"] == "net" && x["port"] == 7004) return std::make_pair(x, all["edges"]);
      return std::make_pair(Json(), all["edges"]);
    };
    auto [row, edges] = row_7004();  // on record already: --wait returned after the edge's report
    ASSERT_TRUE(row.contains("not_listening")) << row.dump() << edges.dump() << logs();
    EXPECT_EQ(row["not_listening"][0]["error"], "Address already in use");
    ASSERT_EQ(edges.size(), 1u) << edges.dump();
    EXPECT_EQ(edges[0]["state"], "partial");
    EXPECT_EQ(edges[0]["host"], row["not_listening"][0]["host"]);
    auto table = cli("exposure --org dev");
    EXPECT_NE(table.out.find("NOT LISTENING"), std::string::npos) << table.out;
    EXPECT_NE(table.out.find("]:7004 (endpoint net/echo/prod held) is not listening on host"), std::string::npos)
        << table.out;
    auto held_described = cli("endpoint describe held" + kIn);
    EXPECT_NE(held_described.out.find(":7004 tcp; NOT LISTENING on host " + row["not_listening"][0]["host"].get<std::string>() +
                                      ": Address already in use"),
              std::string::npos)
        << held_described.out;
    EXPECT_NE(cli("endpoint list" + kIn).out.find("NOT LISTENING"), std::string::npos);
    // `status` says it apart from the rollout, which is converged; `wait` fails on it (exit 6).
    auto st = one_json(cli("-o json status" + kIn));
    EXPECT_EQ(st["phase"], "converged");
    ASSERT_EQ(st["traffic"].size(), 1u) << st.dump();
    EXPECT_EQ(st["traffic"][0].get<std::string>().rfind("endpoint held: [" + v6 + "]:7004 is not listening on host ", 0), 0u)
        << st.dump();
    EXPECT_NE(cli("status" + kIn).out.find("\ntraffic not served:\n  endpoint held: "), std::string::npos);
    EXPECT_EQ(cli("wait --timeout 20s" + kIn).exit, 6);
    auto host = cli("host describe " + edges[0]["host"].get<std::string>());
    EXPECT_NE(host.out.find("edge       partial: serves config v"), std::string::npos) << host.out;
    EXPECT_NE(host.out.find("not listening: tcp [" + v6 + "]:7004: Address already in use"), std::string::npos) << host.out;
    EXPECT_TRUE(eventually(v6, 7000, true)) << "the rest of the snapshot is served";
    ::close(held);
    EXPECT_TRUE(eventually(v6, 7004, true)) << logs();
    for (int i = 0; i < 100 && (row.contains("not_listening") || edges[0]["state"] != "current"); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::tie(row, edges) = row_7004();
    }
    EXPECT_FALSE(row.contains("not_listening")) << row.dump();
    EXPECT_EQ(edges[0]["state"], "current") << edges.dump();
    EXPECT_TRUE(one_json(cli("-o json status" + kIn))["traffic"].empty());
    EXPECT_EQ(cli("wait --timeout 20s" + kIn).exit, 0);
    ASSERT_EQ(cli("endpoint delete held" + kIn).exit, 0);
  }

  // deploy --wait returns once the edge serves the new release: every connection right after reaches it.
  ASSERT_EQ(cli("config set GREETING=bonjour" + kIn).exit, 0);
  auto redeploy = cli("deploy --image " + dev.registry() + "/sample/echo:v1 --manifest " + SOURCE_DIR +
                      "/samples/echo/platform.toml --wait --timeout 120s" + kIn);
  ASSERT_EQ(redeploy.exit, 0) << redeploy.out << logs();
  for (int i = 0; i < 6; ++i) {
    std::string ended;
    const auto g = echo_through(v6, 7000, "GET / HTTP/1.0\r\n\r\n", &ended);
    EXPECT_NE(g.find("bonjour from "), std::string::npos) << i << ": " << g << " (" << ended << ")\n"
                                                          << (i == 0 ? edge_state() : "");
  }
  // The old instances got SIGTERM only once the edge no longer sent them new connections.
  const auto drains = run(dev.psql("SELECT data->>'drain' FROM events WHERE type = 'InstanceStopped'"
                                   " AND data->>'reason' LIKE 'replaced by release%'")).out;
  std::istringstream drain_lines(drains);
  int drained = 0;
  for (std::string line; std::getline(drain_lines, line);) {
    EXPECT_NE(line.find("no longer sends it new connections"), std::string::npos) << line;
    ++drained;
  }
  EXPECT_EQ(drained, 2) << "both old instances: " << drains;

  // The manifest's endpoint cannot be deleted from the CLI; exit 6 says why.
  EXPECT_EQ(cli("endpoint delete echo" + kIn).exit, 6);

  // Released, the IPv4 address stops answering; IPv6 still does. psql shows both allocations.
  auto rel = cli("ip release ipv4 --yes --wait" + kIn);
  ASSERT_EQ(rel.exit, 0) << rel.out;
  EXPECT_NE(rel.out.find("served: every running edge serves the change"), std::string::npos) << rel.out;
  EXPECT_LT(connect_to(v4, 7000), 0) << "released, and --wait returned after the edge let go of it";
  EXPECT_TRUE(eventually(v6, 7000, true)) << edge_state();
  EXPECT_EQ(run(dev.psql("SELECT family || ' ' || (released_at IS NOT NULL) FROM audit.ip_allocations"
                         " WHERE app = 'echo' AND env = 'prod' ORDER BY family")).out,
            "4 true\n6 false\n");
  EXPECT_TRUE(dev.stop());
  // Nothing of the dev platform's network is left: no run namespaces, no local route for its pool.
  EXPECT_EQ(run("ip -6 route show table local " + dev.ipv6_pool()).out, "");
  EXPECT_EQ(run("ip route show root " + dev.instance_pool() + " | grep -c plh || true").out, "0\n");
}
