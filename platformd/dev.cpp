#include "platformd/dev.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>
#include <utility>
#include <vector>

#include "api/auth.h"
#include "api/hosts.h"
#include "api/client.h"
#include "api/resources.h"
#include "cli/context.h"
#include "engine/db.h"
#include "engine/ids.h"
#include "engine/migrate.h"
#include "engine/version.h"
#include "engine/secrets/secrets.h"
#include "platformd/child.h"
#include "platformd/state_dir.h"
#include "platformd/local_postgres.h"
#include "platformd/local_registry.h"
#include "platformd/machine_name.h"

namespace platform::daemon {
namespace fs = std::filesystem;

namespace {
volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct Bootstrap {
  std::string token;
  std::string org = "dev";
  bool created = false;
};

// Once per state folder: the admin user, the "dev" org and an admin token (kept in the state folder).
Bootstrap bootstrap(const std::string& conninfo, const fs::path& state) {
  Bootstrap b;
  auto token_file = state / "admin-token";
  db::Pool pool(conninfo, 1, "platformd-dev");
  // The dev admin is a platform operator (it manages the dev host); also on state folders made before
  // hosts existed.
  pool.transact([&](pqxx::work& tx) { api::make_operator(tx, api::ensure_user(tx, "admin")); });
  if (fs::exists(token_file)) {
    std::ifstream(token_file) >> b.token;
    return b;
  }
  pool.transact([&](pqxx::work& tx) {
    auto user = api::ensure_user(tx, "admin");
    api::Actor actor{user, new_id("req"), new_id("op"), "org.create", "admin"};
    if (tx.exec("SELECT 1 FROM core.resources WHERE kind = 'org' AND name = 'dev' AND deleted_at IS NULL").empty())
      api::create_resource(tx, actor, *api::kind_by_name("org"), "", "", "dev", "created by platformd dev", Json::object());
    b.token = api::issue_token(tx, user, "", "platformd dev admin token").secret;
  });
  {
    std::ofstream out(token_file, std::ios::trunc);
    out << b.token << "\n";
  }
  fs::permissions(token_file, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  b.created = true;
  return b;
}

pid_t spawn_serve(const std::string& conninfo, int api_port, const fs::path& log, const fs::path& secrets_key,
                  const DevOptions& o) {
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0640);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    auto port = "127.0.0.1:" + std::to_string(api_port);
    ::execl("/proc/self/exe", "platformd", "serve", "--database", conninfo.c_str(), "--listen", port.c_str(),
            "--secrets-key", secrets_key.c_str(), "--host-grace", "15s", "--ipv6-pool", o.ipv6_pool.c_str(),
            "--ipv4-pool", o.ipv4_pool.c_str(), "--instance-pool", o.instance_pool.c_str(), "--edge-tls-listen",
            o.edge_tls_listen.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// platform-agent beside platformd (installed) or in the build tree (build/agent/).
std::string agent_binary() {
  const auto self = fs::read_symlink("/proc/self/exe").parent_path();
  for (const auto& p : {self / "platform-agent", self.parent_path() / "agent" / "platform-agent"})
    if (fs::exists(p)) return p.string();
  throw PlatformError(ErrorCode::unavailable, "platform-agent was not found beside platformd",
                      "Build it (scripts/setup) or install it next to platformd.");
}

// The dev host's agent. The first start enrols it with a join token issued here; later starts reuse the
// identity in <state>/agent.
pid_t spawn_agent(const std::string& conninfo, const std::string& url, const fs::path& state, const std::string& runtime) {
  const auto dir = state / "agent";
  // Ctrl-C stops the dev host's instances too: nothing of platformd dev outlives it.
  std::vector<std::string> argv = {agent_binary(), "--control", url, "--state", dir.string(), "--name", "dev",
                                   "--stop-instances-on-exit", "--runtime", runtime};
  if (!fs::exists(dir / "host.json")) {
    db::Pool pool(conninfo, 1, "platformd-dev");
    auto token = pool.transact([&](pqxx::work& tx) {
      return api::issue_join_token(tx, api::ensure_user(tx, "admin"), std::chrono::minutes(10), new_id("req"),
                                   new_id("op"));
    });
    argv.insert(argv.end(), {"--join", token.secret});
  }
  return dev::spawn(argv, {(state / "agent.log").string(), false, SIGTERM});
}

// platform-edge beside platformd (installed) or in the build tree (build/ingress/).
std::string edge_binary() {
  const auto self = fs::read_symlink("/proc/self/exe").parent_path();
  for (const auto& p : {self / "platform-edge", self.parent_path() / "ingress" / "platform-edge"})
    if (fs::exists(p)) return p.string();
  throw PlatformError(ErrorCode::unavailable, "platform-edge was not found beside platformd",
                      "Build it (scripts/setup) or install it next to platformd.");
}

// The dev host's edge, with the agent's host credential.
pid_t spawn_edge(const std::string& url, const fs::path& state, const DevOptions& o) {
  return dev::spawn({edge_binary(), "--control", url, "--host-identity", (state / "agent" / "host.json").string(),
                     "--metrics", o.edge_metrics},
                    {(state / "edge.log").string(), false, SIGTERM});
}

// The dev IPv6 pool is local: a route of type local on lo for the whole prefix (AnyIP), so the edge
// binds any address of it (with IP_FREEBIND) and clients on this machine reach it. Returns whether it
// is in place (and so is removed at the end); "replace" also takes over one a killed run left.
bool add_local_route(const std::string& pool, const fs::path& log) {
  if (::geteuid() != 0) return false;
  return dev::run_to_end({"/usr/sbin/ip", "-6", "route", "replace", "local", pool, "dev", "lo", "table", "local"},
                         {log.string(), false, 0}) == 0;  // when not possible, the log says why
}

void remove_local_route(const std::string& pool, const fs::path& log) {
  dev::run_to_end({"/usr/sbin/ip", "-6", "route", "del", "local", pool, "dev", "lo", "table", "local"},
                  {log.string(), false, 0});
}

bool wait_healthy(const std::string& url, pid_t serve_pid, std::chrono::seconds timeout) {
  api::Client client(url, "");
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline && !g_stop) {
    int status = 0;
    if (::waitpid(serve_pid, &status, WNOHANG) == serve_pid) return false;
    try {
      if (client.request("GET", "/healthz", {}, {}, std::chrono::seconds(2)).status == 200) return true;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// Holds the name "platformd-dev-pool <pool>" for each address pool while this dev runs. A second dev on
// the machine with the same pools would give its envs and instances the same addresses as the first, and
// its stop would remove the first one's local route; it is refused instead, naming the pool.
std::vector<dev::MachineName> hold_pools(const DevOptions& o) {
  std::vector<dev::MachineName> held;
  for (const auto& [flag, pool] : {std::pair<std::string, std::string>{"--ipv6-pool", o.ipv6_pool},
                                   {"--ipv4-pool", o.ipv4_pool},
                                   {"--instance-pool", o.instance_pool}}) {
    held.emplace_back("platformd-dev-pool " + pool);
    if (!held.back().held())
      throw PlatformError(ErrorCode::precondition_failed,
                          "another platformd dev on this machine uses the address pool " + pool,
                          "Stop it, or give this one pools of its own (" + flag +
                              " and the other pool flags), with its own --state, ports and --edge-tls-listen.");
  }
  return held;
}

}  // namespace

int dev(const DevOptions& options) {
  const auto pools_held = hold_pools(options);  // (closed with the process)
  fs::path state = options.state_dir;
  if (state.empty()) {
    if (const char* s = std::getenv("PLATFORM_STATE"); s && *s) state = s;
    else state = dev::default_state_dir();
  }
  fs::create_directories(state);
  state = fs::canonical(state);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  dev::LocalPostgres pg({(state / "postgres").string(), (state / "run").string(), options.pg_port, "platform",
                         "platform", (state / "postgres.log").string()});
  std::cerr << "platformd dev: state folder " << state << "\n";
  std::cerr << "  postgres: " << (pg.initialized() ? "starting" : "initialising a new cluster") << "...\n";
  pg.start();
  const auto conninfo = pg.conninfo();
  std::cerr << "  registry: starting...\n";
  dev::LocalRegistry registry({(state / "registry").string(), options.registry_port, ""});
  try {
    registry.start();
  } catch (...) {
    pg.stop();
    throw;
  }
  auto migrated = db::migrate(conninfo);
  auto boot = bootstrap(conninfo, state);

  const std::string url = "http://127.0.0.1:" + std::to_string(options.api_port);
  auto cfg = cli::load_config();
  auto& ctx = cfg.contexts[options.context_name];
  ctx.url = url;
  ctx.token = boot.token;
  if (ctx.org.empty()) ctx.org = boot.org;
  if (cfg.current.empty() || boot.created) cfg.current = options.context_name;
  cli::save_config(cfg);

  const auto serve_log = state / "platformd.log";
  // The secrets key, created once (mode 0600) and kept with the data it encrypts.
  const auto secrets_key = state / "secrets.key";
  bool key_created = false;
  if (!fs::exists(secrets_key)) {
    secrets::create_key_file(secrets_key.string());
    key_created = true;
  }
  pid_t serve_pid = spawn_serve(conninfo, options.api_port, serve_log, secrets_key, options);
  if (!wait_healthy(url, serve_pid, std::chrono::seconds(60)) && !g_stop) {
    std::cerr << "platformd dev: the control plane did not become healthy; see " << serve_log << "\n";
    dev::stop_child(serve_pid, SIGTERM, std::chrono::seconds(15));
    pg.stop();
    return 1;
  }
  pid_t agent_pid = -1, edge_pid = -1;
  try {
    agent_pid = spawn_agent(conninfo, url, state, options.runtime);
  } catch (const std::exception& e) {
    std::cerr << "platformd dev: cannot start the agent: " << e.what() << "\n";
  }
  const bool route_added = add_local_route(options.ipv6_pool, state / "edge.log");
  try {
    edge_pid = spawn_edge(url, state, options);
  } catch (const std::exception& e) {
    std::cerr << "platformd dev: cannot start the edge: " << e.what() << "\n";
  }
  auto stop_all = [&] {
    std::cerr << "platformd dev: stopping edge, agent, control plane, registry and postgres...\n";
    dev::stop_child(edge_pid, SIGTERM, std::chrono::seconds(10));
    if (route_added) remove_local_route(options.ipv6_pool, state / "edge.log");
    dev::stop_child(agent_pid, SIGTERM, std::chrono::seconds(30));
    dev::stop_child(serve_pid, SIGTERM, std::chrono::seconds(15));
    registry.stop();
    pg.stop();
    std::cerr << "platformd dev: stopped\n";
    return 0;
  };
  if (g_stop) return stop_all();  // Ctrl-C or SIGTERM while starting: a requested stop, not a failure
  std::cout << "platform " << version_line() << " is running (embedded dev mode)\n"
            << "  postgres      pid " << pg.pid() << "  " << conninfo << "  (log " << (state / "postgres.log").string()
            << ")\n"
            << "  migrations    " << migrated.applied.size() << " applied now, " << migrated.present.size()
            << " already present"
            << (migrated.unknown.empty() ? std::string()
                                         : ", " + std::to_string(migrated.unknown.size()) +
                                               " applied by a newer platformd (upgrade this one)")
            << "\n"
            << "  control plane pid " << serve_pid << "  API " << url << "  (roles api,projections,reconcilers; log "
            << serve_log.string() << ")\n"
            << "  org           " << boot.org << (boot.created ? " (created)" : "") << "\n"
            << "  registry      pid " << registry.pid() << "  " << registry.address() << "  (log "
            << registry.log_file() << "; push images with scripts/sample-image " << registry.address() << ")\n"
            << "  agent         pid " << agent_pid << "  host \"dev\", --runtime " << options.runtime << "  (log " << (state / "agent.log").string()
            << "; platform host list)\n"
            << "  edge          pid " << edge_pid << "  endpoints on the env addresses of " << options.ipv6_pool
            << " (IPv4 add-on: " << options.ipv4_pool << "), TLS routes on " << options.edge_tls_listen << ", metrics http://"
            << options.edge_metrics << "/metrics  (log " << (state / "edge.log").string() << "; platform exposure)\n"
            << "  admin token   " << (state / "admin-token").string() << "\n"
            << "  secrets key   " << secrets_key.string() << (key_created ? " (created, mode 0600)" : "")
            << "  (back it up: without it the secrets cannot be read)\n"
            << "  CLI context   \"" << options.context_name << "\" in " << cli::config_path() << "\n"
            << "Try: platform org list; platform project create web; platform events\n"
            << "Stop with Ctrl-C (data stays in the state folder).\n"
            << std::flush;

  int restarts = 0, agent_restarts = 0;
  auto agent_next = std::chrono::steady_clock::now();
  // PostgreSQL is restarted when it dies (crash recovery replays its WAL; the control plane, the agent and
  // the edge reconnect by themselves), up to kPgRestarts times in a row with a growing pause; a run of
  // ten quiet minutes starts the count again. Past that, everything stops: something needs a look.
  constexpr int kPgRestarts = 5;
  int pg_restarts = 0;
  auto pg_restarted_at = std::chrono::steady_clock::now();
  while (!g_stop) {
    if (!pg.alive()) {
      const auto now = std::chrono::steady_clock::now();
      if (now - pg_restarted_at > std::chrono::minutes(10)) pg_restarts = 0;
      if (pg_restarts >= kPgRestarts) {
        std::cerr << "platformd dev: postgres exited again after " << kPgRestarts
                  << " restarts; stopping (see " << (state / "postgres.log").string() << ")\n";
        dev::stop_child(edge_pid, SIGTERM, std::chrono::seconds(10));
        if (route_added) remove_local_route(options.ipv6_pool, state / "edge.log");
        dev::stop_child(agent_pid, SIGTERM, std::chrono::seconds(30));
        dev::stop_child(serve_pid, SIGTERM, std::chrono::seconds(15));
        return 1;
      }
      ++pg_restarts;
      pg_restarted_at = now;
      std::cerr << "platformd dev: postgres exited unexpectedly; restarting it (restart " << pg_restarts << " of "
                << kPgRestarts << "; see " << (state / "postgres.log").string() << ")\n";
      // 1 s, 2 s, 4 s ...: the old server's backends notice their postmaster is gone and leave first.
      for (int i = 0; i < 10 * (1 << (pg_restarts - 1)) && !g_stop; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (g_stop) break;
      try {
        pg.start();
        std::cerr << "platformd dev: postgres is back (pid " << pg.pid() << ")\n";
      } catch (const std::exception& e) {
        std::cerr << "platformd dev: postgres did not start: " << e.what() << "\n";
      }
      continue;
    }
    if (!registry.alive()) {
      std::cerr << "platformd dev: the OCI registry exited; restarting it (see " << registry.log_file() << ")\n";
      try {
        registry.start();
      } catch (const std::exception& e) {
        std::cerr << "platformd dev: " << e.what() << "\n";
      }
    }
    if (agent_pid > 0 && !dev::child_running(agent_pid)) {
      // Restarted with a growing pause (1 s, 2 s, ... 30 s), so an agent that cannot start does not spin.
      agent_next = std::chrono::steady_clock::now() + std::chrono::seconds(std::min(30, 1 << std::min(agent_restarts, 5)));
      ++agent_restarts;
      std::cerr << "platformd dev: the agent exited; restarting it (see " << (state / "agent.log").string() << ")\n";
    }
    if (agent_pid <= 0 && agent_restarts > 0 && std::chrono::steady_clock::now() >= agent_next) {
      try {
        agent_pid = spawn_agent(conninfo, url, state, options.runtime);
      } catch (const std::exception& e) {
        std::cerr << "platformd dev: " << e.what() << "\n";
        agent_next = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      }
    }
    if (edge_pid > 0 && !dev::child_running(edge_pid)) {
      std::cerr << "platformd dev: the edge exited; restarting it (see " << (state / "edge.log").string() << ")\n";
      std::this_thread::sleep_for(std::chrono::seconds(1));
      try {
        edge_pid = spawn_edge(url, state, options);
      } catch (const std::exception& e) {
        std::cerr << "platformd dev: " << e.what() << "\n";
      }
    }
    int status = 0;
    if (serve_pid > 0 && ::waitpid(serve_pid, &status, WNOHANG) == serve_pid) {
      ++restarts;
      std::cerr << "platformd dev: control plane exited (status " << status << "); restart #" << restarts << "\n";
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5000, 200 * restarts)));
      serve_pid = spawn_serve(conninfo, options.api_port, serve_log, secrets_key, options);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return stop_all();
}

}  // namespace platform::daemon
