// platformd: the control plane (migrate, serve, projections, token, dev).
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "api/auth.h"
#include "api/client.h"
#include "api/hosts.h"
#include "api/tokens.h"
#include "engine/db.h"
#include "engine/duration.h"
#include "engine/migrate.h"
#include "engine/version.h"
#include "sql/embedded_migrations.h"
#include "platformd/dev.h"
#include "platformd/serve.h"
#include "projections/runner.h"

using namespace platform;

namespace {
std::string default_database() {
  const char* d = std::getenv("PLATFORM_DATABASE");
  return d ? d : "";
}

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// A newer platformd migrated this database. This one still runs (migrations only add, so old and new
// run side by side during a rolling upgrade), but it should be upgraded: say so at every start.
void warn_unknown_migrations(const db::MigrationResult& r) {
  if (r.unknown.empty()) return;
  std::string names;
  for (const auto& n : r.unknown) names += (names.empty() ? "" : ", ") + n;
  spdlog::warn("the database has {} migration{} this platformd ({}) does not carry: {}. A newer platformd applied "
               "{}; this one keeps running, but upgrade it (`platform version` shows the server's build).",
               r.unknown.size(), r.unknown.size() == 1 ? "" : "s", version_line(), names,
               r.unknown.size() == 1 ? "it" : "them");
}

// `platformd version`: the build, the newest migration it carries and, given a database, where that
// database's schema stands against it.
int print_version(const std::string& database) {
  std::cout << "platformd " << version_line() << "\n";
  const auto& all = sql::embedded_migrations();
  std::cout << "schema    " << (all.empty() ? std::string("-") : all.back().name) << " (" << all.size()
            << " migrations carried)\n";
  if (database.empty()) return 0;
  db::Pool pool(database, 1, "platformd-cli");
  auto st = pool.read([](pqxx::transaction_base& tx) { return db::schema_state(tx); });
  std::cout << "database  " << (st.database.empty() ? std::string("(never migrated)") : st.database);
  if (!st.pending.empty()) std::cout << "; " << st.pending.size() << " to apply (`platformd migrate`)";
  if (!st.unknown.empty()) std::cout << "; " << st.unknown.size() << " applied by a newer platformd";
  if (st.pending.empty() && st.unknown.empty()) std::cout << " (up to date)";
  std::cout << "\n";
  return 0;
}

int fail(const PlatformError& e) {
  std::cerr << "error: " << e.error().message << "\n";
  if (!e.error().hint.empty()) std::cerr << "hint: " << e.error().hint << "\n";
  return exit_code(e.error().code);
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"platformd: the platform control plane"};
  app.set_version_flag("--version", "platformd " + version_line());
  api::set_client_program("platformd");
  app.require_subcommand(1);
  std::string database = default_database();

  auto* version = app.add_subcommand("version", "This build, the schema it carries and (with --database) the database's");
  version->add_option("--database", database, "libpq connection string (env PLATFORM_DATABASE)");
  auto* migrate = app.add_subcommand("migrate", "Apply the SQL migrations (each once, checksummed)");
  migrate->add_option("--database", database, "libpq connection string (env PLATFORM_DATABASE)")->required(database.empty());

  daemon::ServeOptions serve_opts;
  std::string listen = "127.0.0.1:7070", roles = "api,projections,reconcilers", host_grace = "30s";
  int pause_ms = 0;
  auto* serve = app.add_subcommand("serve", "Run control-plane roles: api, projections, reconcilers");
  serve->add_option("--database", database, "libpq connection string (env PLATFORM_DATABASE)")->required(database.empty());
  serve->add_option("--listen", listen, "API address host:port")->capture_default_str();
  serve->add_option("--roles", roles, "Comma-separated roles")->capture_default_str();
  serve->add_option("--host-grace", host_grace, "A host silent this long is marked down")->capture_default_str();
  int retention_hours = 24 * 7;
  serve->add_option("--log-retention-hours", retention_hours, "How long instance logs are kept")
      ->capture_default_str()
      ->check(CLI::Range(1, 24 * 365));
  serve->add_option("--cpu-ratio", serve_opts.cpu_ratio, "How far CPU may be oversubscribed (memory never is)")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 64.0));
  serve->add_option("--max-connections", serve_opts.api.max_connections, "Concurrent API connections")->capture_default_str();
  serve->add_option("--projection-batch-pause-ms", pause_ms, "Fault injection for crash tests")->group("");
  std::vector<std::string> tls_listen;
  std::string ipv4_price = "2.00";
  serve->add_option("--ipv6-pool", serve_opts.pools.ipv6, "CIDR each app env's dedicated IPv6 address comes from");
  serve->add_option("--ipv4-pool", serve_opts.pools.ipv4, "CIDR of the IPv4 add-on (scarce; without it, no IPv4 is offered)");
  serve->add_option("--ipv4-price", ipv4_price, "The IPv4 add-on's monthly price in dollars")->capture_default_str();
  serve->add_option("--instance-pool", serve_opts.pools.instance,
                    "IPv4 CIDR of the instances' private addresses (on their veth or tap, where the edge reaches them)");
  serve->add_option("--edge-tls-listen", tls_listen, "The edge's shared TLS listener ADDRESS:PORT (repeatable), e.g. [2001:db8::1]:443");
  if (const char* k = std::getenv("PLATFORM_SECRETS_KEY")) serve_opts.api.secrets_key_file = k;
  serve->add_option("--secrets-key", serve_opts.api.secrets_key_file,
                    "Secrets key file, mode 0600 (env PLATFORM_SECRETS_KEY); without one the secrets API answers 503");

  auto* proj = app.add_subcommand("projections", "Inspect and rebuild projections");
  proj->require_subcommand(1);
  std::string proj_name;
  auto* rebuild = proj->add_subcommand("rebuild", "Rebuild a projection from event zero");
  rebuild->add_option("name", proj_name, "Projection name")->required();
  rebuild->add_option("--database", database, "libpq connection string")->required(database.empty());
  auto* plist = proj->add_subcommand("list", "Projections, their checkpoints and lag");
  plist->add_option("--database", database, "libpq connection string")->required(database.empty());

  auto* token = app.add_subcommand("token", "Issue API tokens (operators)");
  token->require_subcommand(1);
  std::string user = "admin", token_org, token_desc;
  auto* tcreate = token->add_subcommand("create", "Issue a token; the secret is printed once");
  tcreate->add_option("--user", user, "User name (created if missing)")->capture_default_str();
  tcreate->add_option("--org-id", token_org, "Limit the token to this org ID");
  tcreate->add_option("--description", token_desc, "What the token is for");
  bool make_op = false;
  tcreate->add_flag("--operator", make_op, "Make the user a platform operator (may manage hosts)");
  tcreate->add_option("--database", database, "libpq connection string")->required(database.empty());
  auto* tlist = token->add_subcommand("list", "A user's tokens: state, org, expiry, description (never secrets)");
  tlist->add_option("--user", user, "User name")->capture_default_str();
  tlist->add_option("--database", database, "libpq connection string")->required(database.empty());
  std::string revoke_id;
  auto* trevoke = token->add_subcommand("revoke", "Revoke any user's token (API servers refuse it within 5 s)");
  trevoke->add_option("id", revoke_id, "Token ID (tok_…)")->required();
  trevoke->add_option("--database", database, "libpq connection string")->required(database.empty());

  daemon::DevOptions dev_opts;
  auto* dev = app.add_subcommand("dev", "Run everything on this machine from a state folder (embedded default)");
  dev->add_option("--state", dev_opts.state_dir, "State folder (env PLATFORM_STATE; default /var/lib/platform/dev as root, else ~/.local/share/platform/dev)");
  dev->add_option("--api-port", dev_opts.api_port, "API port on 127.0.0.1")->capture_default_str();
  dev->add_option("--pg-port", dev_opts.pg_port, "PostgreSQL port on 127.0.0.1")->capture_default_str();
  dev->add_option("--registry-port", dev_opts.registry_port, "OCI registry port on 127.0.0.1")->capture_default_str();
  dev->add_option("--context", dev_opts.context_name, "CLI context to write")->capture_default_str();
  dev->add_option("--runtime", dev_opts.runtime,
                  "The dev agent's runtime: auto (microvm where KVM runs guests, else sandbox), microvm (also under "
                  "TCG emulation) or sandbox")
      ->check(CLI::IsMember({"auto", "microvm", "sandbox"}))
      ->capture_default_str();
  dev->add_option("--ipv6-pool", dev_opts.ipv6_pool, "Env IPv6 addresses (served on loopback)")->capture_default_str();
  dev->add_option("--ipv4-pool", dev_opts.ipv4_pool, "The IPv4 add-on's addresses (in 127.0.0.0/8)")->capture_default_str();
  dev->add_option("--instance-pool", dev_opts.instance_pool, "Instances' private addresses (on veths)")->capture_default_str();
  dev->add_option("--edge-tls-listen", dev_opts.edge_tls_listen, "The edge's shared TLS listener")->capture_default_str();
  dev->add_option("--edge-metrics", dev_opts.edge_metrics, "The edge's /metrics address")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  try {
    if (*version) return print_version(database);
    if (*migrate) {
      auto r = db::migrate(database);
      for (const auto& m : r.applied) std::cout << "applied " << m << "\n";
      std::cout << r.applied.size() << " applied, " << r.present.size() << " already present\n";
      warn_unknown_migrations(r);
      return 0;
    }
    if (*serve) {
      raise_fd_limit();
      auto colon = listen.rfind(':');
      if (colon == std::string::npos) throw PlatformError(ErrorCode::invalid_request, "--listen must be host:port", "");
      serve_opts.api.address = listen.substr(0, colon);
      if (serve_opts.api.address.size() > 2 && serve_opts.api.address.front() == '[')
        serve_opts.api.address = serve_opts.api.address.substr(1, serve_opts.api.address.size() - 2);
      serve_opts.api.port = static_cast<std::uint16_t>(std::stoi(listen.substr(colon + 1)));
      serve_opts.conninfo = database;
      {
        double dollars = -1;
        try {
          std::size_t used = 0;
          dollars = std::stod(ipv4_price, &used);
          if (used != ipv4_price.size()) dollars = -1;
        } catch (const std::exception&) {
        }
        if (dollars < 0 || dollars > 10000)
          throw PlatformError(ErrorCode::invalid_request, "--ipv4-price \"" + ipv4_price + "\" is not a price in dollars",
                              "e.g. --ipv4-price 2.00");
        serve_opts.pools.ipv4_price_cents_month = static_cast<int>(dollars * 100 + 0.5);
      }
      for (const auto& l : tls_listen) {
        auto colon = l.rfind(':');
        auto host = colon == std::string::npos ? std::string() : l.substr(0, colon);
        if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
        int port = 0;
        if (colon != std::string::npos && colon + 1 < l.size() && l.size() - colon <= 6 &&
            l.find_first_not_of("0123456789", colon + 1) == std::string::npos)
          port = std::stoi(l.substr(colon + 1));
        if (host.empty() || port < 1 || port > 65535)
          throw PlatformError(ErrorCode::invalid_request, "--edge-tls-listen \"" + l + "\" is not ADDRESS:PORT",
                              "e.g. [2001:db8::1]:443 or 203.0.113.1:443");
        serve_opts.api.edge_tls_listen.push_back({host, port});
      }
      serve_opts.roles.clear();
      std::stringstream ss(roles);
      for (std::string r; std::getline(ss, r, ',');) {
        if (r != "api" && r != "projections" && r != "reconcilers")
          throw PlatformError(ErrorCode::invalid_request, "unknown role \"" + r + "\"",
                              "Roles: api, projections, reconcilers.");
        serve_opts.roles.push_back(r);
      }
      serve_opts.projection_pause = std::chrono::milliseconds(pause_ms);
      auto grace = parse_duration(host_grace);
      if (!grace || *grace < std::chrono::seconds(1))
        throw PlatformError(ErrorCode::invalid_request, "--host-grace must be a duration of at least 1s", "e.g. 30s");
      serve_opts.host_grace = *grace;
      serve_opts.log_retention = std::chrono::hours(retention_hours);
      warn_unknown_migrations(db::migrate(database));
      return daemon::serve(serve_opts);
    }
    if (*rebuild) {
      auto r = projections::rebuild(database, proj_name);
      std::cout << "rebuilt " << proj_name << ": " << r.events << " events folded in " << r.took.count() << " ms ("
                << (r.folded_here ? "by this command" : "by the running platformd") << ")\n";
      return 0;
    }
    if (*plist) {
      db::Pool pool(database, 1, "platformd-cli");
      pool.read([&](pqxx::transaction_base& tx) {
        std::cout << "NAME         CHECKPOINT            EVENTS    LAG  RUNNER\n";
        for (const auto& name : projections::names()) {
          auto c = projections::checkpoint(tx, name);
          auto r = tx.exec_params("SELECT events, runner FROM projection.checkpoints WHERE name = $1", name);
          auto lag = tx.exec_params(
              "SELECT count(*) FROM events WHERE (tx_id, global_position) > ($1::text::xid8, $2::bigint)",
              std::to_string(c.tx), c.pos)[0][0].as<long>();
          std::printf("%-12s %-21s %-9s %-4ld %s\n", name.c_str(), c.encode().c_str(),
                      r.empty() ? "-" : r[0][0].c_str(), lag, r.empty() ? "never ran" : r[0][1].c_str());
        }
        return 0;
      });
      return 0;
    }
    if (*tcreate) {
      db::Pool pool(database, 1, "platformd-cli");
      auto t = pool.transact([&](pqxx::work& tx) {
        auto uid = api::ensure_user(tx, user);
        if (make_op) api::make_operator(tx, uid);
        return api::issue_token(tx, uid, token_org, token_desc);
      });
      std::cout << t.secret << "\n";
      std::cerr << "token " << t.token_id << " for user " << user << " (shown once; only its hash is stored)\n";
      return 0;
    }
    if (*tlist) {
      db::Pool pool(database, 1, "platformd-cli");
      auto tokens = pool.read([&](pqxx::transaction_base& tx) {
        auto u = tx.exec_params("SELECT id FROM core.users WHERE name = $1", user);
        if (u.empty())
          throw PlatformError(ErrorCode::not_found, "no user " + user, "Users are named by `platformd token create --user`.");
        return api::list_tokens(tx, u[0][0].as<std::string>());
      });
      std::printf("%-32s %-8s %-34s %-20s %s\n", "ID", "STATE", "ORG", "EXPIRES", "DESCRIPTION");
      for (const auto& t : tokens)
        std::printf("%-32s %-8s %-34s %-20s %s\n", t.value("id", "").c_str(), t.value("state", "").c_str(),
                    t.value("org_id", "").empty() ? "(every org)" : t.value("org_name", "").c_str(),
                    t["expires_at"].is_string() ? t["expires_at"].get<std::string>().substr(0, 19).c_str() : "never",
                    t.value("description", "").c_str());
      return 0;
    }
    if (*trevoke) {
      db::Pool pool(database, 1, "platformd-cli");
      auto t = pool.transact([&](pqxx::work& tx) {
        return api::revoke_token(tx, revoke_id, "", "", "operator", {{"actor_name", "platformd token revoke"}});
      });
      std::cout << "token " << revoke_id << (t.value("already_revoked", false) ? " was revoked already, at " : " revoked at ")
                << t["revoked_at"].get<std::string>()
                << (t.value("already_revoked", false) ? "" : "; API servers refuse it within 5 s") << "\n";
      return 0;
    }
    if (*dev) return daemon::dev(dev_opts);
  } catch (const PlatformError& e) {
    return fail(e);
  } catch (const std::exception& e) {
    return fail(db::translate(e));
  }
  return 0;
}
