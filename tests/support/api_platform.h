#pragma once
// A whole control plane in the test process: the API server, the projection runners and the LISTEN
// connection on a fresh database of the test's PostgreSQL cluster (tests/support/pg.h), with two users'
// tokens and a secrets key. Stopped by the destructor.
#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "api/auth.h"
#include "api/client.h"
#include "api/hosts.h"
#include "api/server.h"
#include "engine/db.h"
#include "engine/ids.h"
#include "engine/listener.h"
#include "engine/secrets/secrets.h"
#include "projections/runner.h"
#include "tests/support/pg.h"

namespace platform::harness {

struct Platform {
  std::string conninfo = harness::fresh_database();
  Signal wake;
  boost::asio::io_context io;
  std::unique_ptr<Listener> listener;
  std::thread io_thread;
  std::vector<std::unique_ptr<projections::Runner>> runners;
  std::vector<std::thread> runner_threads;
  std::unique_ptr<api::Server> server;
  std::string url, token, other_token, key_file;

  // `tune` adjusts the server's options before it starts.
  explicit Platform(const std::function<void(api::ServerOptions&)>& tune = {}) {
    listener = std::make_unique<Listener>(io, conninfo, "platform_events", [this] { wake.notify(); });
    listener->start();
    io_thread = std::thread([this] {
      auto g = boost::asio::make_work_guard(io);
      io.run();
    });
    for (auto& p : projections::all())
      runners.push_back(std::make_unique<projections::Runner>(std::move(p), projections::RunnerOptions{conninfo}, &wake));
    for (auto& r : runners) runner_threads.emplace_back([&r] { r->run(); });
    api::ServerOptions o;
    o.port = 0;
    o.request_timeout = std::chrono::milliseconds(800);
    key_file = (harness::PgEnvironment::get().root() / ("secrets-" + new_id("k") + ".key")).string();
    secrets::create_key_file(key_file);
    o.secrets_key_file = key_file;
    if (tune) tune(o);
    server = std::make_unique<api::Server>(o, conninfo, wake);
    server->start();
    url = "http://127.0.0.1:" + std::to_string(server->port());
    db::Pool pool(conninfo, 1);
    pool.transact([&](pqxx::work& tx) {
      token = api::issue_token(tx, api::ensure_user(tx, "alice"), "", "test").secret;
      other_token = api::issue_token(tx, api::ensure_user(tx, "mallory"), "", "test").secret;
    });
    for (int i = 0; i < 200 && !healthy(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ~Platform() {
    server->stop();
    for (auto& r : runners) r->stop();
    for (auto& t : runner_threads) t.join();
    listener->stop();
    io.stop();
    io_thread.join();
  }
  bool healthy() const {
    try {
      return api::Client(url, "").request("GET", "/healthz").status == 200;
    } catch (...) {
      return false;
    }
  }
  api::Client client(const std::string& t = "") const { return api::Client(url, t.empty() ? token : t); }
  // The HTTP status of one request (token: the test user's unless given).
  int status(const std::string& method, const std::string& target, const Json& body, const std::string& t = "") const {
    return client(t).request(method, target, body.dump()).status;
  }
  int db_connections() const {
    pqxx::connection c(conninfo);
    pqxx::work tx(c);
    return tx.exec("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")[0][0].as<int>();
  }
};

// org acme / project shop / app api, and its envs.
void create_envs(const api::Client& c, const std::vector<std::string>& envs) {
  c.call("POST", "/v1/orgs", Json{{"name", "acme"}});
  c.call("POST", "/v1/orgs/acme/projects", Json{{"name", "shop"}});
  c.call("POST", "/v1/orgs/acme/projects/shop/apps", Json{{"name", "api"}});
  for (const auto& e : envs) c.call("POST", "/v1/orgs/acme/projects/shop/apps/api/envs", Json{{"name", e}});
}

// Runs `q` in a transaction of its own on the test's database and commits (test set-up and checks).
inline pqxx::result exec_sql(const std::string& conninfo, const std::string& q) {
  pqxx::connection c(conninfo);
  pqxx::work tx(c);
  auto r = tx.exec(q);
  tx.commit();
  return r;
}

// Enrols a sandbox host named `name` with room for anything the tests place (16 CPUs, 64 GiB) and no
// agent behind it: a test writes what its reports would. Returns the host's credential (its agent's and
// its edge's).
inline std::string enrol_roomy_host(const std::string& conninfo, const std::string& name) {
  pqxx::connection c(conninfo);
  pqxx::work tx(c);
  const auto alice = tx.exec("SELECT id FROM core.users WHERE name = 'alice'")[0][0].as<std::string>();
  auto credential =
      api::enrol_host(tx, api::issue_join_token(tx, alice, std::chrono::seconds(600), "req", "op").secret, name,
                      {{"capacity", {{"cpus", 16}, {"memory_mib", 65536}, {"disk_mib", 100000}}},
                       {"runtime", {{"name", "sandbox"}, {"reason", "test"}}}})
          .credential;
  tx.commit();
  return credential;
}

}  // namespace platform::harness
