// Addresses, endpoints, exposure and the edge's config (docs/network.md): IPAM per env (IPv6 by
// default, the IPv4 add-on only when asked with its price accepted), CLI-managed endpoints, the org's
// exposure in one answer, and the versioned snapshot platform-edge long-polls with its host credential.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <initializer_list>
#include <string_view>

#include "api/body.h"
#include "api/env_vars.h"
#include "api/exposure.h"
#include "api/hosts.h"
#include "api/ipam.h"
#include "api/metrics.h"
#include "api/mutation.h"
#include "api/path.h"
#include "api/releases.h"
#include "api/routes.h"
#include "engine/db.h"
#include "engine/duration.h"
#include "engine/ids.h"
#include "engine/names.h"
#include "engine/suggest.h"

namespace platform::api {
namespace {

int family_param(const Params& params) {
  const auto f = params.at("family");
  if (f == "ipv4") return 4;
  if (f == "ipv6") return 6;
  throw PlatformError(ErrorCode::not_found, "no address family \"" + f + "\"", "Use ipv4 or ipv6.");
}

CommandReceipt address_receipt(const std::vector<Resolved>& chain, const Allocated& a, const std::string& stream) {
  CommandOutcome out;
  out.resource_id = chain.back().id;
  out.appended = a.appended;
  CommandReceipt r;
  r.last = out.last();
  r.duplicate = a.appended.empty();
  r.receipt = {{"resource", env_resource_json(chain.back(), path_of(chain))},
               {"address", a.address},
               {"events", out.events_json(stream)},
               {"next", Json::array({"platform ip list " + env_flags(chain), "platform exposure"})}};
  return r;
}

Response get_env_ips(Context& ctx, const Request& req, Principal& p, const Params& params) {
  auto chain = env_chain(ctx, p, params);
  const bool all = req.param("all") == "true";
  return json_response(200, ctx.pool.read([&](pqxx::transaction_base& tx) {
    return Json{{"addresses", list_addresses(tx, chain.back().org_id, chain.back().id, all)}};
  }));
}

Response get_org_ips(Context& ctx, const Request& req, Principal& p, const Params& params) {
  auto chain = resolve_path(ctx, p, params);
  const bool all = req.param("all") == "true";
  return json_response(200, ctx.pool.read([&](pqxx::transaction_base& tx) {
    return Json{{"addresses", list_addresses(tx, chain[0].id, "", all)}};
  }));
}

// The quote for the IPv4 add-on: its price, and what the env holds now.
Response get_ipv4_quote(Context& ctx, const Request&, Principal& p, const Params& params) {
  auto chain = env_chain(ctx, p, params);
  return json_response(200, ctx.pool.read([&](pqxx::transaction_base& tx) {
    const int cents = ipv4_price_cents(tx);
    auto held = env_address(tx, chain.back().id, 4);
    return Json{{"family", "ipv4"}, {"price_cents_month", cents}, {"price", format_price(cents)},
                {"held", held ? *held : Json()}};
  }));
}

Response post_address(Context& ctx, const Request& req, Principal& p, const Params& params) {
  auto body = parse_body(req.body, {{"accept_price_cents_month", FieldType::integer}});
  const int family = family_param(params);
  auto chain = env_chain(ctx, p, params);
  ctx.metrics.mutations_total++;
  return run_mutation(ctx, req, p, family == 4 ? "ip.allocate-v4" : "ip.allocate-v6", 200,
                      [&](pqxx::work& tx, const Actor& actor) {
    PriceAcceptance accepted{std::nullopt, "", "Send accept_price_cents_month equal to the quote (GET .../ips/ipv4-quote); "
                                               "platform ip allocate-v4 asks, or takes --yes."};
    if (body.contains("accept_price_cents_month")) accepted.cents = body["accept_price_cents_month"].get<std::int64_t>();
    return address_receipt(chain, allocate_address(tx, actor, chain.back(), family, accepted), ips_stream(chain.back().id));
  });
}

Response delete_address(Context& ctx, const Request& req, Principal& p, const Params& params) {
  const int family = family_param(params);
  auto chain = env_chain(ctx, p, params);
  ctx.metrics.mutations_total++;
  return run_mutation(ctx, req, p, family == 4 ? "ip.release-v4" : "ip.release-v6", 200,
                      [&](pqxx::work& tx, const Actor& actor) {
    return address_receipt(chain, release_address(tx, actor, chain.back(), family), ips_stream(chain.back().id));
  });
}

Response get_exposure(Context& ctx, const Request&, Principal& p, const Params& params) {
  auto chain = resolve_path(ctx, p, params);
  return json_response(200, ctx.pool.read([&](pqxx::transaction_base& tx) {
    auto all = exposed(tx, "");  // every host's snapshot is made of it; the org's rows are among it
    std::vector<Exposed> org;
    for (const auto& x : all)
      if (x.org_id == chain[0].id) org.push_back(x);
    auto rows = exposure_json(org, ctx.edge_tls_listen);
    auto edges = edge_states(tx);
    mark_taken(tx, edges, ctx.edge_tls_listen, all);
    mark_not_listening(rows, edges);
    mark_unreachable(rows, org, edges);
    narrow_edges_to(edges, rows);
    return Json{{"org_id", chain[0].id}, {"exposed", rows}, {"edges", edges}};
  }));
}

// --- endpoints made with the CLI ---

std::string endpoints_stream(const std::string& env_id) { return "endpoints-" + env_id; }

Response get_endpoints(Context& ctx, const Request&, Principal& p, const Params& params) {
  auto chain = env_chain(ctx, p, params);
  return json_response(200, ctx.pool.read([&](pqxx::transaction_base& tx) {
    return Json{{"env_id", chain.back().id}, {"endpoints", env_endpoints(tx, chain.back().id)}};
  }));
}

// By id or name; not found names the env, the closest endpoint name and the list command that works
// when pasted.
Json find_endpoint(pqxx::transaction_base& tx, const std::vector<Resolved>& chain, const std::string& id_or_name) {
  auto all = env_endpoints(tx, chain.back().id);
  std::vector<std::string> names, of_process;  // of_process: the endpoints of a process named so
  for (auto& e : all) {
    if (e["id"] == id_or_name || e["name"] == id_or_name) return e;
    names.push_back(e["name"].get<std::string>());
    if (e.value("process", "") == id_or_name) of_process.push_back("\"" + e["name"].get<std::string>() + "\"");
  }
  std::string hint;
  if (!of_process.empty())  // a process's name where an endpoint's was meant
    hint = fmt::format("\"{}\" is a process; its endpoint{} {}. ", id_or_name, of_process.size() == 1 ? " is" : "s are",
                       fmt::join(of_process, ", "));
  else if (const auto close = did_you_mean(id_or_name, std::vector<std::string_view>(names.begin(), names.end()));
           !close.empty())
    hint = "Did you mean \"" + close + "\"? ";
  throw PlatformError(ErrorCode::not_found,
                      "env " + chain.back().name + " has no endpoint \"" + id_or_name.substr(0, 80) + "\"",
                      hint + "List them with `platform endpoint list " + env_flags(chain) + "`.");
}

// An endpoint made with the CLI must name a process the env's release runs, when it runs one (before
// the first deploy any name is taken: the release it waits for may bring it).
void check_endpoint_process(pqxx::transaction_base& tx, const std::vector<Resolved>& chain, const std::string& process) {
  const auto current = current_release(tx, chain.back().id);
  if (!current.release) return;
  const auto& processes = current.release->manifest.value("processes", Json::object());
  if (processes.contains(process)) return;
  std::vector<std::string> names;
  for (const auto& [name, spec] : processes.items()) names.push_back(name);
  const auto close = did_you_mean(process, std::vector<std::string_view>(names.begin(), names.end()));
  throw PlatformError(ErrorCode::invalid_request,
                      fmt::format("release v{} of env {} has no process \"{}\"", current.release->number,
                                  chain.back().name, process),
                      (close.empty() ? "" : "Did you mean \"" + close + "\"? ") + "Its processes: " +
                          fmt::format("{}", fmt::join(names, ", ")) + ".");
}

// When internal_port was left to default to the port and the process's health check listens elsewhere:
// a note that the process may not listen there, with the command that would reach where it does.
std::string internal_port_note(pqxx::transaction_base& tx, const std::vector<Resolved>& chain,
                               const std::string& process, std::int64_t internal) {
  const auto current = current_release(tx, chain.back().id);
  if (!current.release) return "";
  const auto spec = current.release->manifest.value("processes", Json::object()).value(process, Json::object());
  const auto health = spec.value("health", Json::object());
  const auto type = health.value("type", "");
  const auto checked = health.value("port", std::int64_t{0});
  if ((type != "tcp" && type != "http") || checked <= 0 || checked == internal) return "";
  return fmt::format("internal port {} is the same as --port (none was given), but process {}'s health check uses "
                     "port {}: if that is where it listens, delete this endpoint and create it again with "
                     "--internal-port {} (platform exposure says whether the edge can connect)",
                     internal, process, checked, checked);
}

Response get_endpoint(Context& ctx, const Request&, Principal& p, const Params& params) {
  auto chain = env_chain(ctx, p, params);
  return json_response(200, ctx.pool.read([&](pqxx::transaction_base& tx) {
    return find_endpoint(tx, chain, params.at("endpoint"));
  }));
}

Response post_endpoint(Context& ctx, const Request& req, Principal& p, const Params& params) {
  auto body = parse_body(req.body, {{"name", FieldType::string},
                                    {"port", FieldType::integer, true},
                                    {"internal_port", FieldType::integer},
                                    {"process", FieldType::string, true},
                                    {"proxy_protocol", FieldType::string}});
  const auto port = body["port"].get<std::int64_t>();
  const auto internal = body.value("internal_port", port);
  if (port < 1 || port > 65535 || internal < 1 || internal > 65535)
    throw PlatformError(ErrorCode::invalid_request, "port and internal_port must be between 1 and 65535", "");
  const auto proxy = body.value("proxy_protocol", std::string());
  if (!proxy.empty() && proxy != "v2")
    throw PlatformError(ErrorCode::invalid_request, "proxy_protocol must be \"v2\" or absent",
                        "PROXY protocol v2 is the one version offered.");
  const auto process = body["process"].get<std::string>();
  const auto name = body.value("name", fmt::format("{}-{}", process, port));
  for (const auto& [what, value] : {std::pair{"endpoint name", name}, std::pair{"process name", process}})
    if (!valid_name(value))
      throw PlatformError(ErrorCode::invalid_request, std::string("invalid ") + what + " \"" + value.substr(0, 80) + "\"",
                          name_rule_for(value));
  auto chain = env_chain(ctx, p, params);
  const auto env = chain.back();
  ctx.metrics.mutations_total++;
  return run_mutation(ctx, req, p, "endpoint.create", 201, [&](pqxx::work& tx, const Actor& actor) {
    check_endpoint_process(tx, chain, process);
    claim_endpoint_port(tx, env, static_cast<int>(port));
    const auto id = new_id("ep");
    auto ins = tx.exec_params(
        "INSERT INTO core.endpoints (id, org_id, env_id, name, port, internal_port, process, proxy_protocol, created_by)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING 1",
        id, env.org_id, env.id, name, port, internal, process, proxy, actor.user_id);
    if (ins.empty())
      throw PlatformError(ErrorCode::name_taken, "this env already has an endpoint named " + name,
                          "Choose another --name, or delete that one first.");
    Json data = {{"endpoint_id", id}, {"env_id", env.id},          {"name", name},        {"port", port},
                 {"internal_port", internal}, {"process", process}, {"proxy_protocol", proxy}};
    CommandOutcome out;
    out.resource_id = id;
    out.appended = events::append(tx, endpoints_stream(env.id), std::nullopt,
                                  {{uuid_to_string(new_uuid_v7()), "EndpointCreated", 1, data,
                                    event_metadata(actor, env)}});
    CommandReceipt r;
    r.last = out.last();
    r.receipt = {{"resource", env_resource_json(env, path_of(chain))},
                 {"endpoint", find_endpoint(tx, chain, id)},
                 {"events", out.events_json(endpoints_stream(env.id))},
                 {"next", Json::array({"platform endpoint describe " + name + " " + env_flags(chain), "platform exposure"})}};
    if (!body.contains("internal_port"))
      if (auto note = internal_port_note(tx, chain, process, internal); !note.empty()) r.receipt["note"] = note;
    return r;
  });
}

Response delete_endpoint(Context& ctx, const Request& req, Principal& p, const Params& params) {
  auto chain = env_chain(ctx, p, params);
  const auto env = chain.back();
  ctx.metrics.mutations_total++;
  return run_mutation(ctx, req, p, "endpoint.delete", 200, [&](pqxx::work& tx, const Actor& actor) {
    auto e = find_endpoint(tx, chain, params.at("endpoint"));
    if (e["source"] != "cli")
      throw PlatformError(ErrorCode::precondition_failed,
                          "endpoint " + e["name"].get<std::string>() + " comes from the manifest of the current release",
                          "Remove it from platform.toml and deploy: platform deploy " + env_flags(chain));
    tx.exec_params("UPDATE core.endpoints SET deleted_at = now() WHERE id = $1", e["id"].get<std::string>());
    tx.exec_params("DELETE FROM core.exposure_claims WHERE kind = 'port' AND key = $1 AND source = 'cli'",
                   fmt::format("{}/{}", env.id, e["port"].get<int>()));
    CommandOutcome out;
    out.resource_id = e["id"];
    out.appended = events::append(tx, endpoints_stream(env.id), std::nullopt,
                                  {{uuid_to_string(new_uuid_v7()), "EndpointDeleted", 1,
                                    {{"endpoint_id", e["id"]}, {"env_id", env.id}, {"name", e["name"]}, {"port", e["port"]}},
                                    event_metadata(actor, env)}});
    CommandReceipt r;
    r.last = out.last();
    r.receipt = {{"resource", env_resource_json(env, path_of(chain))},
                 {"endpoint", e},
                 {"events", out.events_json(endpoints_stream(env.id))},
                 {"next", Json::array({"platform endpoint list " + env_flags(chain), "platform exposure"})}};
    return r;
  });
}

// --- platform-edge ---

WatchPlan watch_edge_config(Context& ctx, const Request& req) {
  const auto credential = host_credential(req);
  const auto host = ctx.pool.read([&](pqxx::transaction_base& tx) { return authenticate_host(tx, credential); });
  const auto [after, wait] = versioned_wait(req, "a snapshot version");
  // Its poll says the edge is alive. No event: written without a wake-up (which would make every long
  // poll look again), and a failure here is not the edge's: the snapshot is still answered.
  try {
    auto lease = ctx.pool.acquire();
    pqxx::nontransaction tx(*lease);
    record_edge_seen(tx, host.id);
  } catch (const std::exception& e) {
    spdlog::warn("edge on host {}: its poll was not recorded: {}", host.name, e.what());
  }
  WatchPlan plan;
  plan.wait = wait;
  ctx.metrics.watch_requests_total++;
  plan.level = [&ctx, host, after](bool last) -> std::optional<Response> {
    // Computed in a read; written only when the content moved (most wake-ups change nothing for it).
    auto s = ctx.pool.read([&](pqxx::transaction_base& tx) { return host_edge_snapshot(tx, host.id, ctx.edge_tls_listen); });
    if (!s.content.contains("version"))
      s.content["version"] = ctx.pool.transact([&](pqxx::work& tx) { return bump_edge_version(tx, host.id, s.hash); });
    if (!last && s.content["version"].get<std::int64_t>() == after) return std::nullopt;
    return json_response(200, s.content);
  };
  return plan;
}

// Refuses a field of the edge's report item `item` (named `at`) that is not one of `fields`.
void only_fields(const Json& item, const std::string& at, std::initializer_list<std::string_view> fields) {
  for (const auto& [k, v] : item.items())
    if (std::find(fields.begin(), fields.end(), k) == fields.end())
      throw PlatformError(ErrorCode::invalid_request, at + " has an unknown field \"" + k.substr(0, 40) + "\"",
                          fmt::format("Its fields are {}.", fmt::join(fields, ", ")));
}

// The edge says what it serves: the snapshot version it applied, the listeners it could not bind, and
// the backends it cannot connect to.
Response post_edge_status(Context& ctx, const Request& req) {
  const auto credential = host_credential(req);
  const auto host = ctx.pool.read([&](pqxx::transaction_base& tx) { return authenticate_host(tx, credential); });
  auto body = parse_body(req.body, {{"version", FieldType::integer, true},
                                    {"unbound", FieldType::array_of_objects, true},
                                    {"refused", FieldType::object, false},
                                    {"unreachable", FieldType::array_of_objects, false},
                                    {"build", FieldType::object, false}});
  const auto version = body["version"].get<std::int64_t>();
  if (version < 0) throw PlatformError(ErrorCode::invalid_request, "\"version\" must be 0 or more", "");
  if (body["unbound"].size() > 10000)
    throw PlatformError(ErrorCode::invalid_request, "\"unbound\" lists more than 10000 listeners", "");
  Json unbound = Json::array();
  for (const auto& u : body["unbound"]) {
    const auto at = "unbound[" + std::to_string(unbound.size()) + "]";
    only_fields(u, at, {"address", "port", "kind", "error"});
    const auto port = u.contains("port") && u["port"].is_number_integer() ? u["port"].get<std::int64_t>() : 0;
    if (!u.contains("address") || !u["address"].is_string() || u["address"].get<std::string>().size() > 64 ||
        port < 1 || port > 65535 || !u.contains("kind") || (u["kind"] != "tcp" && u["kind"] != "tls") ||
        !u.contains("error") || !u["error"].is_string())
      throw PlatformError(ErrorCode::invalid_request,
                          at + " needs address (a string), port (1-65535), kind (\"tcp\" or \"tls\") and error (a string)", "");
    unbound.push_back({{"address", u["address"]}, {"port", port}, {"kind", u["kind"]},
                       {"error", utf8_prefix(u["error"].get<std::string>(), 300)}});
  }
  Json refused;  // the newest snapshot the edge could not apply, and why
  if (body.contains("refused")) {
    const auto& r = body["refused"];
    if (r.size() != 2 || !r.contains("version") || !r["version"].is_number_integer() || r["version"].get<std::int64_t>() < 0 ||
        !r.contains("error") || !r["error"].is_string())
      throw PlatformError(ErrorCode::invalid_request,
                          "\"refused\" needs exactly version (0 or more) and error (a string)", "");
    refused = {{"version", r["version"]}, {"error", utf8_prefix(r["error"].get<std::string>(), 300)}};
  }
  Json unreachable = Json::array();  // backends it cannot connect to
  const auto listed = body.value("unreachable", Json::array());
  if (listed.size() > 10000)
    throw PlatformError(ErrorCode::invalid_request, "\"unreachable\" lists more than 10000 backends", "");
  for (const auto& u : listed) {
    const auto at = "unreachable[" + std::to_string(unreachable.size()) + "]";
    only_fields(u, at, {"target", "address", "port", "error", "failures"});
    const auto port = u.contains("port") && u["port"].is_number_integer() ? u["port"].get<std::int64_t>() : 0;
    const auto failures =
        u.contains("failures") && u["failures"].is_number_integer() ? u["failures"].get<std::int64_t>() : 0;
    if (!u.contains("target") || !u["target"].is_string() || u["target"].get<std::string>().size() > 200 ||
        !u.contains("address") || !u["address"].is_string() || u["address"].get<std::string>().size() > 64 ||
        port < 1 || port > 65535 || !u.contains("error") || !u["error"].is_string() || failures < 1)
      throw PlatformError(ErrorCode::invalid_request,
                          at + " needs target (a string), address (a string), port (1-65535), error (a string) and "
                               "failures (1 or more)",
                          "");
    unreachable.push_back({{"target", u["target"]}, {"address", u["address"]}, {"port", port},
                           {"error", utf8_prefix(u["error"].get<std::string>(), 300)}, {"failures", failures}});
  }
  Json build;  // the edge's own build (engine/version.h); older edges do not send it
  if (body.contains("build")) {
    const auto& b = body["build"];
    only_fields(b, "build", {"version", "commit"});
    for (const char* k : {"version", "commit"})
      if (!b.contains(k) || !b[k].is_string() || b[k].get<std::string>().empty() || b[k].get<std::string>().size() > 64)
        throw PlatformError(ErrorCode::invalid_request, std::string("build.") + k + " must be a string of 1 to 64 characters", "");
    build = b;
  }
  // No event (what an edge serves is its state, not a change anyone made): no wake-up either.
  bool known = false;
  try {
    auto lease = ctx.pool.acquire();
    pqxx::nontransaction tx(*lease);
    known = record_edge_status(tx, host.id, version, unbound, refused, unreachable, build);
  } catch (const PlatformError&) {
    throw;
  } catch (const std::exception& e) {
    throw db::translate(e);
  }
  if (!known)
    throw PlatformError(ErrorCode::precondition_failed, "host " + host.name + " has no edge config yet",
                        "The edge reports after it has applied a snapshot from GET /v1/edge/config.");
  return json_response(200, {{"host", host.name}, {"version", version}, {"unbound", unbound.size()}});
}

}  // namespace

void add_network_routes(std::vector<Route>& out) {
  const std::string org = "/v1/orgs/{org}";
  const std::string env = org + "/projects/{project}/apps/{app}/envs/{env}";
  out.push_back({"GET", org + "/ips", "The org's addresses (all=true: released ones too), with hours recorded for priced ones",
                 get_org_ips, {}, {}});
  out.push_back({"GET", org + "/exposure",
                 "Everything the org exposes: family, address, port, protocol, SNI names, PROXY v2, TLS, target, backends",
                 get_exposure, {}, {}});
  out.push_back({"GET", env + "/ips", "An env's addresses (all=true: released ones too)", get_env_ips, {}, {}});
  out.push_back({"GET", env + "/ips/ipv4-quote", "The IPv4 add-on's monthly price, and the address the env holds",
                 get_ipv4_quote, {}, {}});
  out.push_back({"POST", env + "/ips/{family}",
                 "Allocate the env's ipv4 (the paid add-on: accept_price_cents_month is needed) or ipv6 address",
                 post_address, {}, {}});
  out.push_back({"DELETE", env + "/ips/{family}", "Release the env's ipv4 or ipv6 address", delete_address, {}, {}});
  out.push_back({"GET", env + "/endpoints", "An env's endpoints: the manifest's and those made with the CLI",
                 get_endpoints, {}, {}});
  out.push_back({"POST", env + "/endpoints", "Create an endpoint: a TCP port on the env's addresses to a process",
                 post_endpoint, {}, {}});
  out.push_back({"GET", env + "/endpoints/{endpoint}", "One endpoint with its addresses and backends", get_endpoint, {}, {}});
  out.push_back({"DELETE", env + "/endpoints/{endpoint}", "Delete an endpoint made with the CLI", delete_endpoint, {}, {}});
  out.push_back({"GET", "/v1/edge/config",
                 "The edge's config snapshot, level-triggered long poll by version (platform-edge, host credential)", {},
                 {}, {}, watch_edge_config});
  out.push_back({"POST", "/v1/edge/status",
                 "What the edge serves: the snapshot version it applied, the listeners it could not bind (platform-edge, host credential)",
                 {}, {}, post_edge_status});
}

}  // namespace platform::api
