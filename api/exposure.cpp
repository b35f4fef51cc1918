#include "api/exposure.h"

#include <fmt/format.h>

#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "engine/crypto.h"
#include "engine/db.h"
#include "engine/error.h"

namespace platform::api {

namespace {

struct EnvRow {
  std::string env_id, org_id, project, app, env;
  Json manifest;  // null when the env has no release
};

struct InstanceRow {
  std::string process, address, host_id, name;
  bool healthy = false;
};

Json listen_json(const std::string& address, int port) { return {{"address", address}, {"port", port}}; }

std::string family_name(const std::string& address) { return address.find(':') == std::string::npos ? "ipv4" : "ipv6"; }

}  // namespace

std::vector<Exposed> exposed(pqxx::transaction_base& tx, const std::string& org_id, const std::string& host_id) {
  std::vector<EnvRow> envs;
  for (const auto& r : tx.exec_params(
           "SELECT e.id, e.org_id, pr.name, ap.name, e.name, coalesce(rel.manifest::text, '')"
           " FROM core.resources e JOIN core.resources ap ON ap.id = e.parent_id"
           " JOIN core.resources pr ON pr.id = ap.parent_id"
           " LEFT JOIN core.env_runtime er ON er.env_id = e.id LEFT JOIN core.releases rel ON rel.id = er.release_id"
           " WHERE e.kind = 'env' AND e.deleted_at IS NULL AND ($1 = '' OR e.org_id = $1)"
           "   AND (rel.id IS NOT NULL OR EXISTS (SELECT 1 FROM core.endpoints x WHERE x.env_id = e.id AND x.deleted_at IS NULL))"
           " ORDER BY pr.name, ap.name, e.name",
           org_id)) {
    const auto m = r[5].as<std::string>();
    envs.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<std::string>(),
                    r[4].as<std::string>(), m.empty() ? Json() : Json::parse(m)});
  }
  std::map<std::string, std::vector<std::pair<int, std::string>>> addresses;
  for (const auto& r : tx.exec_params("SELECT env_id, family, host(address) FROM core.ip_allocations"
                                      " WHERE released_at IS NULL AND ($1 = '' OR org_id = $1) ORDER BY family DESC",
                                      org_id))
    addresses[r[0].as<std::string>()].emplace_back(r[1].as<int>(), r[2].as<std::string>());
  std::map<std::string, std::vector<InstanceRow>> instances;
  for (const auto& r : tx.exec_params(
           "SELECT env_id, process, coalesce(host(address), ''), state = 'running' AND health IN ('healthy', 'none'),"
           " coalesce(host_id, ''), name"
           " FROM core.instances WHERE desired = 'run' AND state NOT IN ('stopped', 'lost')"
           " AND ($1 = '' OR org_id = $1) AND ($2 = '' OR host_id = $2) ORDER BY address, id",
           org_id, host_id))
    instances[r[0].as<std::string>()].push_back(
        {r[1].as<std::string>(), r[2].as<std::string>(), r[4].as<std::string>(), r[5].as<std::string>(), r[3].as<bool>()});
  std::map<std::string, std::vector<pqxx::row>> cli;
  auto cli_rows = tx.exec_params(
      "SELECT id, env_id, name, port, internal_port, process, proxy_protocol FROM core.endpoints"
      " WHERE deleted_at IS NULL AND ($1 = '' OR org_id = $1) ORDER BY port",
      org_id);
  for (const auto& r : cli_rows) cli[r[1].as<std::string>()].push_back(r);

  std::vector<Exposed> out;
  for (const auto& e : envs) {
    auto fill = [&](Exposed& x) {
      x.org_id = e.org_id;
      x.env_id = e.env_id;
      x.project = e.project;
      x.app = e.app;
      x.env = e.env;
      for (const auto& i : instances[e.env_id]) {
        if (i.process != x.process) continue;
        ++x.instances;
        if (i.healthy && !i.address.empty()) {
          x.backends.push_back(i.address);
          x.backend_hosts.push_back(i.host_id);
          x.backend_names.push_back(i.name);
        }
      }
    };
    if (e.manifest.is_object())
      for (const auto& m : e.manifest.value("endpoints", Json::array())) {
        Exposed x;
        x.kind = "endpoint";
        x.source = "manifest";
        x.name = m.value("name", "");
        x.id = e.env_id + "/" + x.name;
        x.process = m.value("process", "");
        x.port = m.value("port", 0);
        x.internal_port = m.value("internal_port", 0);
        x.proxy_protocol = m.value("proxy_protocol", "");
        x.addresses = addresses[e.env_id];
        fill(x);
        out.push_back(std::move(x));
      }
    for (const auto& r : cli[e.env_id]) {
      Exposed x;
      x.kind = "endpoint";
      x.source = "cli";
      x.id = r[0].as<std::string>();
      x.name = r[2].as<std::string>();
      x.port = r[3].as<int>();
      x.internal_port = r[4].as<int>();
      x.process = r[5].as<std::string>();
      x.proxy_protocol = r[6].as<std::string>();
      x.addresses = addresses[e.env_id];
      fill(x);
      out.push_back(std::move(x));
    }
    if (e.manifest.is_object()) {
      int n = 0;
      for (const auto& m : e.manifest.value("routes", Json::array())) {
        Exposed x;
        x.kind = "route";
        x.source = "manifest";
        x.name = e.app + "-" + e.env + (n ? "-" + std::to_string(n) : "");
        x.id = e.env_id + "/route-" + std::to_string(n++);
        x.process = m.value("process", "");
        x.internal_port = m.value("internal_port", 0);
        x.proxy_protocol = m.value("proxy_protocol", "");
        x.hostnames = m.value("hostnames", std::vector<std::string>{});
        fill(x);
        out.push_back(std::move(x));
      }
    }
  }
  return out;
}

Json exposure_json(const std::vector<Exposed>& all, const std::vector<ListenAddress>& tls_listen) {
  Json rows = Json::array();
  auto base = [](const Exposed& x) {
    return Json{{"kind", x.kind},
                {"id", x.id},
                {"name", x.name},
                {"source", x.source},
                {"proxy_protocol", x.proxy_protocol.empty() ? "off" : x.proxy_protocol},
                {"target", {{"project", x.project}, {"app", x.app}, {"env", x.env}, {"env_id", x.env_id},
                            {"process", x.process}, {"internal_port", x.internal_port}}},
                {"backends", {{"healthy", x.backends.size()}, {"total", x.instances}}}};
  };
  for (const auto& x : all) {
    if (x.kind == "endpoint") {
      if (x.addresses.empty()) {
        Json j = base(x);
        j.update({{"family", ""}, {"address", ""}, {"port", x.port}, {"protocol", "tcp"}, {"sni", Json::array()},
                  {"tls", "none: raw TCP, the app's own protocol"},
                  {"note", "the env holds no address yet (deploy it, or configure an IPv6 pool)"}});
        rows.push_back(std::move(j));
      }
      for (const auto& [family, address] : x.addresses) {
        Json j = base(x);
        j.update({{"family", family == 4 ? "ipv4" : "ipv6"}, {"address", address}, {"port", x.port},
                  {"protocol", "tcp"}, {"sni", Json::array()}, {"tls", "none: raw TCP, the app's own protocol"}});
        if (family == 4) j["add_on"] = "ipv4";
        rows.push_back(std::move(j));
      }
    } else {
      for (const auto& l : tls_listen) {
        Json j = base(x);
        j.update({{"family", family_name(l.address)}, {"address", l.address}, {"port", l.port}, {"protocol", "tls"},
                  {"sni", x.hostnames}, {"tls", "passthrough: the app terminates TLS"}, {"shared_listener", true}});
        rows.push_back(std::move(j));
      }
    }
  }
  return rows;
}

Json edge_snapshot(const std::vector<Exposed>& all, const std::vector<ListenAddress>& tls_listen) {
  Json endpoints = Json::array(), routes = Json::array(), listen = Json::array();
  for (const auto& l : tls_listen) listen.push_back(listen_json(l.address, l.port));
  for (const auto& x : all) {
    Json backends = Json::array();
    for (const auto& b : x.backends) backends.push_back(listen_json(b, x.internal_port));
    Json t = {{"id", x.id}, {"name", x.app + "/" + x.env + "/" + x.name}, {"backends", backends}};
    if (!x.proxy_protocol.empty()) t["proxy_protocol"] = x.proxy_protocol;
    if (x.kind == "endpoint") {
      if (x.addresses.empty()) continue;
      Json at = Json::array();
      for (const auto& a : x.addresses) at.push_back(listen_json(a.second, x.port));
      t["listen"] = at;
      endpoints.push_back(std::move(t));
    } else {
      t["name"] = x.hostnames.empty() ? x.name : x.hostnames.front();
      t["hostnames"] = x.hostnames;
      routes.push_back(std::move(t));
    }
  }
  Json out = {{"endpoints", endpoints}};
  if (!listen.empty() || !routes.empty()) out["tls"] = {{"listen", listen}, {"routes", routes}};
  return out;
}

HostEdgeSnapshot host_edge_snapshot(pqxx::transaction_base& tx, const std::string& host_id,
                                    const std::vector<ListenAddress>& tls_listen) {
  HostEdgeSnapshot out;
  out.content = edge_snapshot(exposed(tx, "", host_id), tls_listen);
  out.hash = sha256_hex(out.content.dump());
  auto row = tx.exec_params("SELECT version FROM core.edge_config WHERE host_id = $1 AND content_hash = $2", host_id,
                            out.hash);
  if (!row.empty()) out.content["version"] = row[0][0].as<std::int64_t>();
  return out;
}

std::int64_t bump_edge_version(pqxx::work& tx, const std::string& host_id, const std::string& hash) {
  // The row is locked for the rest of the transaction: two polls of one edge bump it once.
  auto version = tx.exec_params(
      "INSERT INTO core.edge_config AS c (host_id, version, content_hash, seen_at) VALUES ($1, 1, $2, now())"
      " ON CONFLICT (host_id) DO UPDATE SET version = c.version + 1, content_hash = excluded.content_hash, changed_at = now()"
      "   WHERE c.content_hash <> excluded.content_hash"
      " RETURNING version",
      host_id, hash);
  if (version.empty())
    version = tx.exec_params("SELECT version FROM core.edge_config WHERE host_id = $1", host_id);
  return version[0][0].as<std::int64_t>();
}

Json edge_states(pqxx::transaction_base& tx) {
  Json out = Json::array();
  for (const auto& r : tx.exec_params(
           "SELECT h.name, c.host_id, c.version, c.applied_version, c.unbound::text, " + db::sql_rfc3339("c.seen_at") +
           ", floor(extract(epoch FROM now() - c.seen_at))::bigint, c.refused::text, c.unreachable::text, c.build::text"
           " FROM core.edge_config c JOIN core.hosts h ON h.id = c.host_id ORDER BY h.name")) {
    const auto version = r[2].as<std::int64_t>();
    const auto unbound = Json::parse(r[4].as<std::string>());
    Json e = {{"host", r[0].as<std::string>()}, {"host_id", r[1].as<std::string>()}, {"version", version},
              {"applied_version", r[3].is_null() ? Json() : Json(r[3].as<std::int64_t>())},
              {"seen_at", r[5].is_null() ? Json() : Json(r[5].as<std::string>())},
              {"seen_seconds_ago", r[6].is_null() ? Json() : Json(r[6].as<std::int64_t>())},
              {"unbound", unbound},
              {"refused", r[7].is_null() ? Json() : Json::parse(r[7].as<std::string>())},
              {"unreachable", Json::parse(r[8].as<std::string>())},
              {"build", r[9].is_null() ? Json() : Json::parse(r[9].as<std::string>())}};
    if (r[6].is_null() || r[6].as<std::int64_t>() > kEdgeAbsentSeconds) e["state"] = "absent";
    else if (!unbound.empty()) e["state"] = "partial";
    else if (r[3].is_null() || r[3].as<std::int64_t>() < version) e["state"] = "behind";
    else e["state"] = "current";
    out.push_back(std::move(e));
  }
  return out;
}

std::map<std::string, bool> edges_asked_for_present(pqxx::transaction_base& tx,
                                                    const std::vector<ListenAddress>& tls_listen,
                                                    const std::vector<Exposed>& all) {
  std::map<std::string, bool> out;
  // Each host's snapshot keeps the backends on that host, as host_edge_snapshot() computes it host by host.
  for (const auto& r : tx.exec("SELECT host_id, content_hash FROM core.edge_config")) {
    const auto host = r[0].as<std::string>();
    auto mine = all;
    for (auto& x : mine) {
      std::vector<std::string> backends;
      for (std::size_t i = 0; i < x.backends.size(); ++i)
        if (x.backend_hosts[i] == host) backends.push_back(x.backends[i]);
      x.backends = std::move(backends);
    }
    out[host] = sha256_hex(edge_snapshot(mine, tls_listen).dump()) == r[1].as<std::string>();
  }
  return out;
}

void mark_taken(pqxx::transaction_base& tx, Json& edges, const std::vector<ListenAddress>& tls_listen,
                const std::vector<Exposed>& all) {
  if (edges.empty()) return;
  const auto asked_for_present = edges_asked_for_present(tx, tls_listen, all);
  for (auto& e : edges) {
    const auto version = e["version"].get<std::int64_t>();
    // The content the edge asked for last is on record (its hash): is it the present one?
    const auto it = asked_for_present.find(e["host_id"].get<std::string>());
    const bool asked = it != asked_for_present.end() && it->second;
    e["wanted_version"] = asked ? version : version + 1;  // its next poll bumps the version by one
    e["taken"] = asked && e["applied_version"].is_number_integer() && e["applied_version"].get<std::int64_t>() == version;
    if (e["state"] == "current" && !e["taken"].get<bool>()) e["state"] = "behind";
  }
}

Json edges_pending(const Json& edges) {
  Json out = Json::array();
  for (const auto& e : edges) {
    if (e.value("state", "") == "absent" || e.value("taken", true)) continue;
    // One that never reported what it serves (a platform-edge older than its status report) never will.
    if (e["applied_version"].is_null()) continue;
    const auto& refused = e["refused"];
    if (refused.is_object() && refused.value("version", std::int64_t{-1}) >= e.value("wanted_version", std::int64_t{0}))
      continue;  // it refused the present snapshot: it will not take it (a problem, not a wait)
    out.push_back(e["host"]);
  }
  return out;
}

namespace {
// The edges that did not bind `kind` ("tcp" | "tls") on address:port, with why: [{host, error}].
Json not_listening(const Json& edges, const std::string& kind, const std::string& address, int port) {
  Json missing = Json::array();
  for (const auto& e : edges)
    for (const auto& u : e["unbound"])
      if (u.value("kind", "") == kind && u.value("address", "") == address && u.value("port", 0) == port)
        missing.push_back({{"host", e["host"]}, {"error", u.value("error", "")}});
  return missing;
}
}  // namespace

void mark_unreachable(Json& rows, const std::vector<Exposed>& all, const Json& edges) {
  std::map<std::string, Json> by_id;
  for (const auto& x : all)
    if (auto u = unreachable_backends(x, edges); !u.empty()) by_id[x.id] = std::move(u);
  for (auto& row : rows)
    if (auto it = by_id.find(row.value("id", "")); it != by_id.end()) row["unreachable"] = it->second;
}

void narrow_edges_to(Json& edges, const Json& rows) {
  std::set<std::tuple<std::string, std::string, int>> own;  // (kind, address, port) of the rows
  for (const auto& row : rows)
    own.insert({row.value("protocol", "") == "tls" ? "tls" : "tcp", row.value("address", ""), row.value("port", 0)});
  for (auto& e : edges) {
    e.erase("unreachable");
    Json mine = Json::array();
    for (const auto& u : e.value("unbound", Json::array()))
      if (own.count({u.value("kind", ""), u.value("address", ""), u.value("port", 0)})) mine.push_back(u);
    e["unbound"] = mine;
    if (e.value("state", "") == "partial" && mine.empty()) e["state"] = e.value("taken", false) ? "current" : "behind";
  }
}

void mark_not_listening(Json& rows, const Json& edges) {
  for (auto& row : rows)
    if (auto missing = not_listening(edges, row.value("protocol", ""), row.value("address", ""), row.value("port", 0));
        !missing.empty())
      row["not_listening"] = std::move(missing);
}

bool record_edge_status(pqxx::transaction_base& tx, const std::string& host_id, std::int64_t version,
                        const Json& unbound, const Json& refused, const Json& unreachable, const Json& build) {
  const auto nullable = [](const Json& j) {
    return j.is_null() ? std::optional<std::string>() : std::optional<std::string>(j.dump());
  };
  return !tx.exec_params("UPDATE core.edge_config SET applied_version = $2, unbound = $3::jsonb, refused = $4::jsonb,"
                         " unreachable = $5::jsonb, build = $6::jsonb, reported_at = now(), seen_at = now()"
                         " WHERE host_id = $1 RETURNING 1",
                         host_id, version, unbound.dump(), nullable(refused), unreachable.dump(), nullable(build))
              .empty();
}

void record_edge_seen(pqxx::transaction_base& tx, const std::string& host_id) {
  tx.exec_params("UPDATE core.edge_config SET seen_at = now() WHERE host_id = $1", host_id);
}

namespace {

// Inserts the claim; when another env holds it, throws name_taken naming the holder (same org) or not.
void claim(pqxx::work& tx, const Resolved& env, const std::string& kind, const std::string& key,
           const std::string& source, const std::string& what) {
  pqxx::result h;
  // A holder that lets go between the insert and the look (its transaction deleted the claim) is
  // raced again, a few times.
  for (int attempt = 0; attempt < 5 && h.empty(); ++attempt) {
    auto r = tx.exec_params(
        "INSERT INTO core.exposure_claims (kind, key, env_id, org_id, source) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (kind, key) DO NOTHING RETURNING 1",
        kind, key, env.id, env.org_id, source);
    if (!r.empty()) return;
    h = tx.exec_params(
        "SELECT c.env_id, c.org_id, c.source, pr.name, ap.name, e.name FROM core.exposure_claims c"
        " JOIN core.resources e ON e.id = c.env_id JOIN core.resources ap ON ap.id = e.parent_id"
        " JOIN core.resources pr ON pr.id = ap.parent_id WHERE c.kind = $1 AND c.key = $2",
        kind, key);
  }
  if (h.empty()) throw PlatformError(ErrorCode::unavailable, what + " is changing hands; try again", "");
  const auto another = kind == "port" ? std::string("another port") : std::string("another host name");
  if (h[0][1].as<std::string>() != env.org_id)
    throw PlatformError(ErrorCode::name_taken, what + " is taken", "Choose " + another + ".");
  const bool same_env = h[0][0].as<std::string>() == env.id;
  const bool by_cli = h[0][2].as<std::string>() == "cli";
  const auto holder = same_env ? std::string("this env's ") + (by_cli ? "endpoint made with platform endpoint create" : "manifest")
                               : fmt::format("project {} app {} env {}", h[0][3].as<std::string>(),
                                             h[0][4].as<std::string>(), h[0][5].as<std::string>());
  // The way out depends on who holds it: a CLI endpoint is deleted with the CLI, a manifest's entry
  // leaves with a deploy of a platform.toml without it.
  const auto flags = fmt::format("--project {} --app {} --env {}", h[0][3].as<std::string>(), h[0][4].as<std::string>(),
                                 h[0][5].as<std::string>());
  std::string endpoint = "NAME";  // a CLI endpoint's claim is its port in this env: named exactly
  if (by_cli && kind == "port") {
    auto n = tx.exec_params("SELECT name FROM core.endpoints WHERE env_id = $1 AND port = $2 AND deleted_at IS NULL",
                            env.id, std::stoi(key.substr(key.rfind('/') + 1)));
    if (!n.empty()) endpoint = n[0][0].as<std::string>();
  }
  const auto way_out = !same_env ? "Remove it there first (deploy that env without it), or choose " + another + "."
                       : by_cli  ? "Delete that endpoint (platform endpoint delete " + endpoint + " " + flags +
                                   "), or choose " + another + "."
                                 : "Choose " + another + ", or remove it from platform.toml and deploy.";
  throw PlatformError(ErrorCode::name_taken, fmt::format("{} is already held by {}", what, holder), way_out);
}

}  // namespace

void claim_manifest_exposure(pqxx::work& tx, const Resolved& env, const Json& manifest) {
  drop_claims(tx, env.id, "manifest");
  for (const auto& e : manifest.value("endpoints", Json::array())) {
    const int port = e.value("port", 0);
    claim(tx, env, "port", fmt::format("{}/{}", env.id, port), "manifest", fmt::format("port {}", port));
  }
  for (const auto& r : manifest.value("routes", Json::array()))
    for (const auto& h : r.value("hostnames", std::vector<std::string>{}))
      claim(tx, env, "hostname", h, "manifest", "host name " + h);
}

void claim_endpoint_port(pqxx::work& tx, const Resolved& env, int port) {
  claim(tx, env, "port", fmt::format("{}/{}", env.id, port), "cli", fmt::format("port {}", port));
}

void drop_claims(pqxx::work& tx, const std::string& env_id, const std::string& source, int port) {
  tx.exec_params(
      "DELETE FROM core.exposure_claims WHERE env_id = $1 AND ($2 = '' OR source = $2)"
      " AND ($3 = 0 OR (kind = 'port' AND key = $1 || '/' || $3::text))",
      env_id, source, port);
}

Json env_endpoints(pqxx::transaction_base& tx, const std::string& env_id) {
  Json out = Json::array();
  auto org = tx.exec_params("SELECT org_id FROM core.resources WHERE id = $1", env_id);
  if (org.empty()) return out;
  const auto edges = edge_states(tx);
  for (const auto& x : exposed(tx, org[0][0].as<std::string>())) {
    if (x.env_id != env_id || x.kind != "endpoint") continue;
    Json addrs = Json::array();
    for (const auto& [family, address] : x.addresses) {
      Json a = {{"family", family == 4 ? "ipv4" : "ipv6"}, {"address", address}};
      if (auto missing = not_listening(edges, "tcp", address, x.port); !missing.empty()) a["not_listening"] = missing;
      addrs.push_back(std::move(a));
    }
    out.push_back({{"id", x.id},
                   {"name", x.name},
                   {"source", x.source},
                   {"protocol", "tcp"},
                   {"port", x.port},
                   {"internal_port", x.internal_port},
                   {"process", x.process},
                   {"proxy_protocol", x.proxy_protocol.empty() ? "off" : x.proxy_protocol},
                   {"addresses", addrs},
                   {"backends", {{"healthy", x.backends.size()}, {"total", x.instances}}},
                   {"unreachable", unreachable_backends(x, edges)}});
  }
  return out;
}

Json instance_drain(pqxx::transaction_base& tx, const std::string& host_id, const std::string& instance_id,
                    const std::vector<ListenAddress>& tls_listen) {
  auto r = tx.exec_params("SELECT desired FROM core.instances WHERE id = $1 AND host_id = $2", instance_id, host_id);
  if (r.empty())
    throw PlatformError(ErrorCode::not_found, "instance " + instance_id.substr(0, 60) + " is not on this host",
                        "An agent asks about its own instances only.");
  if (r[0][0].as<std::string>() != "stop")
    return {{"drained", false}, {"why", "it is not asked to stop: the edge may send it connections"}};
  Json edges = Json::array();
  for (auto& e : edge_states(tx))
    if (e["host_id"] == host_id) edges.push_back(std::move(e));
  if (edges.empty()) return {{"drained", true}, {"why", "no edge serves this host"}};
  mark_taken(tx, edges, tls_listen, exposed(tx, ""));
  const auto& e = edges[0];
  if (!edges_pending(edges).empty())
    return {{"drained", false}, {"why", "the edge on host " + e.value("host", "") + " has not taken the change yet"}};
  if (e.value("taken", false))
    return {{"drained", true}, {"why", "the edge on host " + e.value("host", "") + " no longer sends it new connections"}};
  return {{"drained", true},
          {"why", "the edge on host " + e.value("host", "") + " will not take the change (" + e.value("state", "") +
                      "; platform exposure): not waited for"}};
}

Json unreachable_backends(const Exposed& x, const Json& edges) {
  Json out = Json::array();
  for (const auto& e : edges) {
    if (e.value("state", "") == "absent") continue;  // what it said last may be long past
    for (const auto& u : e.value("unreachable", Json::array())) {
      if (u.value("target", "") != x.id) continue;
      const auto address = u.value("address", "");
      const int port = u.value("port", 0);
      std::string instance;
      for (std::size_t i = 0; i < x.backends.size(); ++i)
        if (x.backends[i] == address && i < x.backend_names.size()) instance = x.backend_names[i];
      if (instance.empty()) continue;  // no longer a backend: the edge's next snapshot drops it
      const auto error = u.value("error", "");
      const auto failures = u.value("failures", std::int64_t{1});
      const auto what = x.kind == "route" ? "route " + fmt::format("{}", fmt::join(x.hostnames, ", ")) : "endpoint " + x.name;
      const auto at = (address.find(':') == std::string::npos ? address : "[" + address + "]") + ":" + std::to_string(port);
      std::string text = fmt::format("{}: the edge on host {} cannot connect to instance {} ({}): {}", what,
                                     e.value("host", ""), instance, at, error);
      if (failures > 1) text += fmt::format(" ({} times in a row)", failures);
      if (error == "Connection refused")  // something answered the address; nothing listens on that port
        text += fmt::format("; is process {} listening on port {} (on every address, not only 127.0.0.1)?", x.process,
                            x.internal_port);
      out.push_back({{"kind", x.kind}, {"name", x.name}, {"host", e.value("host", "")}, {"instance", instance},
                     {"address", address}, {"port", port}, {"error", error}, {"failures", failures}, {"text", text}});
    }
  }
  return out;
}

Json env_traffic(pqxx::transaction_base& tx, const std::string& env_id, const std::vector<ListenAddress>& tls_listen) {
  auto all = exposed(tx, "");  // every host's snapshot is made of it; the env's rows are among it
  auto edges = edge_states(tx);
  mark_taken(tx, edges, tls_listen, all);
  Json out = {{"traffic", Json::array()}, {"not_listening", Json::array()}, {"unreachable", Json::array()},
              {"edges_pending", edges_pending(edges)}};
  std::vector<Exposed> mine;
  for (auto& x : all)
    if (x.env_id == env_id) mine.push_back(std::move(x));
  if (mine.empty()) return out;  // it exposes nothing: nothing to serve
  auto& problems = out["traffic"];
  if (edges.empty()) {
    problems.push_back("no platform-edge has asked for its config yet: nothing this env exposes is served (platform exposure)");
    return out;
  }
  auto rows = exposure_json(mine, tls_listen);
  mark_not_listening(rows, edges);
  for (const auto& row : rows)
    for (const auto& n : row.value("not_listening", Json::array())) {
      const auto kind = row.value("kind", "");
      const auto address = row.value("address", "");
      const auto at = (address.find(':') == std::string::npos ? address : "[" + address + "]") + ":" +
                      std::to_string(row.value("port", 0));
      Json item = {{"kind", kind}, {"name", row.value("name", "")}, {"address", address}, {"port", row.value("port", 0)},
                   {"host", n.value("host", "")}, {"error", n.value("error", "")}};
      if (kind == "route") {
        item["hostnames"] = row["sni"];
        std::string names;
        for (const auto& h : row["sni"]) names += (names.empty() ? "" : ", ") + h.get<std::string>();
        problems.push_back(fmt::format("route {}: the shared TLS listener {} is not listening on host {}: {} (another "
                                       "process there holds it: an operator frees it or moves the listener, platformd "
                                       "--edge-tls-listen)",
                                       names, at, item["host"].get<std::string>(), item["error"].get<std::string>()));
      } else {
        problems.push_back(fmt::format("endpoint {}: {} is not listening on host {}: {} (another process there holds it; "
                                       "free it or move the endpoint to another port)",
                                       item["name"].get<std::string>(), at, item["host"].get<std::string>(),
                                       item["error"].get<std::string>()));
      }
      out["not_listening"].push_back(std::move(item));
    }
  for (const auto& x : mine)
    for (auto& u : unreachable_backends(x, edges)) {
      problems.push_back(u["text"]);
      out["unreachable"].push_back(std::move(u));
    }
  for (const auto& edge : edges) {
    const auto state = edge.value("state", "");
    if (state == "absent")
      problems.push_back("the edge on host " + edge.value("host", "") +
                         " has not asked for its config lately: nothing is served there (is platform-edge running?)");
    else if (state == "behind" && edge["refused"].is_object() &&
             edge["refused"].value("version", std::int64_t{-1}) >= edge.value("version", std::int64_t{0}))
      problems.push_back("the edge on host " + edge.value("host", "") + " refused its newest config: " +
                         edge["refused"].value("error", "") + " (platform exposure)");
  }
  return out;
}

Json stranded_endpoints(pqxx::transaction_base& tx, const std::string& env_id, const Json& manifest,
                        const std::string& env_flags) {
  Json out = Json::array();
  const auto processes = manifest.value("processes", Json::object());
  for (const auto& r : tx.exec_params("SELECT name, process FROM core.endpoints WHERE env_id = $1 AND deleted_at IS NULL"
                                      " ORDER BY name",
                                      env_id)) {
    const auto name = r[0].as<std::string>(), process = r[1].as<std::string>();
    if (processes.contains(process)) continue;
    out.push_back({{"endpoint", name},
                   {"process", process},
                   {"text", fmt::format("endpoint {} (made with platform endpoint create) reaches process {}, which this "
                                        "release does not run: it has no backends under it. Delete it with `platform "
                                        "endpoint delete {} {}`, or keep the process in platform.toml",
                                        name, process, name, env_flags)}});
  }
  return out;
}

}  // namespace platform::api
