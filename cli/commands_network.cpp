// platform ip list|allocate-v4|release, platform endpoint create|list|describe|delete and platform
// exposure (docs/network.md).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <iostream>
#include <set>

#include "cli/cli.h"
#include "engine/ids.h"

namespace platform::cli {
namespace {

std::string join(const Json& list, const char* sep = ",") {
  std::string out;
  for (const auto& s : list) out += (out.empty() ? "" : sep) + s.get<std::string>();
  return out;
}

std::map<std::string, std::string> idempotent(const std::string& key) {
  return {{"Idempotency-Key", key.empty() ? new_id("idem") : key}};
}

// A listing as ndjson (one item a line) or a table; callers print the whole answer for -o json.
void print_rows(const Globals& g, const Json& items, const std::vector<std::string>& headers,
                const std::function<std::vector<std::string>(const Json&)>& row) {
  if (g.format() == Format::ndjson) {
    for (const auto& i : items) std::cout << i.dump() << "\n";
    return;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& i : items) rows.push_back(row(i));
  print_table(headers, rows);
}

void add_ip(CLI::App& app, Globals& g) {
  auto* ip = app.add_subcommand("ip", "An env's addresses: its IPv6 (by default) and the paid IPv4 add-on");
  ip->require_subcommand(1);

  auto all = std::make_shared<bool>(false);
  auto* list = ip->add_subcommand("list", "Addresses of the env (with --env) or of the whole org");
  list->add_flag("--all", *all, "Released addresses too");
  list->callback([&g, all] {
    auto s = open_session(g);
    const auto base = s.ctx.env.empty() ? "/v1/orgs/" + api::url_encode(s.need_org()) : s.env_path();
    auto out = s.client().call("GET", base + "/ips" + (*all ? "?all=true" : ""));
    if (g.format() == Format::json) return print_json(out);
    print_rows(g, out["addresses"],
               {"FAMILY", "ADDRESS", "PROJECT", "APP", "ENV", "PRICE", "HOURS", "STATE", "ALLOCATED", "ID"},
               [](const Json& a) {
                 return std::vector<std::string>{a.value("family", ""), a.value("address", ""), a.value("project", ""),
                                                 a.value("app", ""),
                                                 a.value("env", ""), a.value("price", ""),
                                                 a.contains("usage_hours") ? std::to_string(a["usage_hours"].get<int>()) : "-",
                                                 a.value("state", ""), a.value("allocated_at", ""), a.value("id", "")};
               });
  });

  auto yes = std::make_shared<bool>(false);
  auto key = std::make_shared<std::string>();
  auto* v4 = ip->add_subcommand("allocate-v4", "Allocate the env's dedicated IPv4 address (a paid add-on: states its price)");
  v4->add_flag("--yes", *yes, "Accept the monthly price without asking (needed when not on a terminal)");
  v4->add_option("--idempotency-key", *key, "Make a retried request safe");
  auto v4_wait = std::make_shared<RolloutWait>();
  add_served_wait(v4, *v4_wait);
  v4->callback([&g, yes, key, v4_wait] {
    auto s = open_session(g);
    Json body = Json::object();
    if (auto price = accept_ipv4_price(s, g, *yes, "env " + s.need_env() + " gets a dedicated IPv4 address"))
      body["accept_price_cents_month"] = *price;
    // With --wait, every endpoint of the env must then listen on the new address too (routes stay on the
    // shared listeners).
    print_receipt_and_wait_served(g, s, s.client().call("POST", s.env_path() + "/ips/ipv4", body, idempotent(*key)),
                                  *v4_wait, [](const std::string& endpoint) { return !endpoint.empty(); });
  });

  auto family = std::make_shared<std::string>("ipv4");
  auto ryes = std::make_shared<bool>(false);
  auto* release = ip->add_subcommand("release", "Release the env's ipv4 (default) or ipv6 address: it may go to another env");
  release->add_option("family", *family, "ipv4 or ipv6")->check(CLI::IsMember({"ipv4", "ipv6"}))->capture_default_str();
  release->add_flag("--yes", *ryes, "Do not ask (needed when not on a terminal)");
  release->add_option("--idempotency-key", *key, "Make a retried request safe");
  auto release_wait = std::make_shared<RolloutWait>();
  add_served_wait(release, *release_wait);
  release->callback([&g, family, ryes, key, release_wait] {
    auto s = open_session(g);
    const auto what = fmt::format("release the {} address of env {}? Its endpoints stop answering on it, and the "
                                  "address may go to another env",
                                  *family, s.need_env());
    if (!*ryes) {
      if (!::isatty(0))
        throw PlatformError(ErrorCode::precondition_failed, "releasing an address needs confirmation",
                            "Add --yes: platform ip release " + *family + " --yes" + s.env_flags());
      if (!ask(what)) throw PlatformError(ErrorCode::interrupted, "not released", "");
    }
    print_receipt_and_wait_served(g, s, s.client().call("DELETE", s.env_path() + "/ips/" + *family, std::nullopt, idempotent(*key)),
                                  *release_wait, [](const std::string&) { return false; });
  });
}

struct EndpointArgs {
  std::string name, process, proxy, key;
  int port = 0, internal_port = 0;
  RolloutWait wait;
};

// ", 2 REFUSE THE EDGE" when an edge cannot connect to some of the row's healthy backends.
std::string unreachable_text(const Json& row) {
  std::set<std::string> instances;
  for (const auto& u : row.value("unreachable", Json::array())) instances.insert(u.value("instance", ""));
  return instances.empty() ? "" : fmt::format(", {} REFUSE THE EDGE", instances.size());
}

// An address an edge could not bind: "; NOT LISTENING on host dev: Address already in use" per edge.
std::string not_listening_text(const Json& row) {
  std::string out;
  for (const auto& n : row.value("not_listening", Json::array()))
    out += "; NOT LISTENING on host " + n.value("host", "") + ": " + n.value("error", "");
  return out;
}

void add_endpoint(CLI::App& app, Globals& g) {
  auto* ep = app.add_subcommand("endpoint", "An env's TCP endpoints: the manifest's and ones made here");
  ep->require_subcommand(1);

  auto a = std::make_shared<EndpointArgs>();
  auto* create = ep->add_subcommand("create", "Expose a process's port as a TCP port on the env's addresses");
  create->footer(
      "Examples:\n"
      "  platform endpoint create db --port 5432 --process web --project shop --app api --env prod\n"
      "  platform endpoint create --port 25 --internal-port 2525 --process mail --proxy-protocol v2 --env prod\n"
      "  platform exposure   # what the org exposes now");
  create->add_option("--port", a->port, "The external port")->required()->check(CLI::Range(1, 65535));
  create->add_option("--internal-port", a->internal_port, "Where the process listens (default: --port)")
      ->check(CLI::Range(1, 65535));
  create->add_option("--process", a->process, "The process that serves it")->required();
  create->add_option("--proxy-protocol", a->proxy, "v2: send a PROXY v2 header first")->check(CLI::IsMember({"v2"}));
  create->add_option("name,--name", a->name, "Its name (default: PROCESS-PORT)");
  create->add_option("--idempotency-key", a->key, "Make a retried request safe");
  add_served_wait(create, a->wait);
  create->callback([&g, a] {
    auto s = open_session(g);
    Json body = {{"port", a->port}, {"process", a->process}};
    if (a->internal_port) body["internal_port"] = a->internal_port;
    if (!a->proxy.empty()) body["proxy_protocol"] = a->proxy;
    if (!a->name.empty()) body["name"] = a->name;
    auto receipt = s.client().call("POST", s.env_path() + "/endpoints", body, idempotent(a->key));
    const auto name = receipt.contains("endpoint") ? receipt["endpoint"].value("name", "") : a->name;
    print_receipt_and_wait_served(g, s, receipt, a->wait, [name](const std::string& e) { return e == name; });
  });

  auto* list = ep->add_subcommand("list", "The env's endpoints with their addresses and backends");
  list->callback([&g] {
    auto s = open_session(g);
    auto out = s.client().call("GET", s.env_path() + "/endpoints");
    if (g.format() == Format::json) return print_json(out);
    print_rows(g, out["endpoints"], {"NAME", "PORT", "PROCESS", "INTERNAL", "PROXY", "ADDRESSES", "BACKENDS", "SOURCE"},
               [](const Json& e) {
                 std::string addrs;
                 bool missing = false;
                 for (const auto& x : e["addresses"]) {
                   addrs += (addrs.empty() ? "" : ",") + x.value("address", "");
                   missing |= x.contains("not_listening");
                 }
                 return std::vector<std::string>{
                     e.value("name", ""), std::to_string(e.value("port", 0)), e.value("process", ""),
                     std::to_string(e.value("internal_port", 0)), e.value("proxy_protocol", ""), addrs.empty() ? "-" : addrs,
                     fmt::format("{}/{} healthy", e["backends"].value("healthy", 0), e["backends"].value("total", 0)) +
                         unreachable_text(e) + (missing ? ", NOT LISTENING (describe it)" : ""),
                     e.value("source", "")};
               });
  });

  auto which = std::make_shared<std::string>();
  auto* describe = ep->add_subcommand("describe", "One endpoint: where it listens and what it reaches");
  describe->add_option("endpoint", *which, "Name or ID")->required();
  describe->callback([&g, which] {
    auto s = open_session(g);
    describe_endpoint(g, s, *which);
  });

  auto key = std::make_shared<std::string>();
  auto* del = ep->add_subcommand("delete", "Delete an endpoint made with `platform endpoint create`");
  del->add_option("endpoint", *which, "Name or ID")->required();
  del->add_option("--idempotency-key", *key, "Make a retried request safe");
  auto del_wait = std::make_shared<RolloutWait>();
  add_served_wait(del, *del_wait);
  del->callback([&g, which, key, del_wait] {
    auto s = open_session(g);
    print_receipt_and_wait_served(
        g, s, s.client().call("DELETE", s.env_path() + "/endpoints/" + api::url_encode(*which), std::nullopt, idempotent(*key)),
        *del_wait, [](const std::string&) { return false; });
  });
}

// Under the exposure table: what each host's edge serves against what it should, and why any row is
// not served (docs/network.md#what-the-edge-serves).
void print_edges(const Json& out) {
  const auto edges = out.value("edges", Json::array());
  if (edges.empty()) {
    if (!out["exposed"].empty())
      std::cout << "\nnot served as listed:\n  no platform-edge has asked for its config yet, so nothing listed here is "
                   "served: run one on each host that runs instances (docs/network.md#the-edges-config)\n";
    return;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : edges)
    rows.push_back({e.value("host", ""), version_name(e["applied_version"]), edge_wanted(e), e.value("state", ""),
                    e["seen_seconds_ago"].is_number_integer() ? short_duration(e["seen_seconds_ago"].get<std::int64_t>()) + " ago"
                                                              : std::string("never")});
  std::cout << "\n";
  print_table({"EDGE ON HOST", "SERVES", "WANTED", "STATE", "SEEN"}, rows);
  std::vector<std::string> problems;
  for (const auto& x : out["exposed"])
    for (const auto& n : x.value("not_listening", Json::array())) {
      const auto& t = x["target"];
      problems.push_back(fmt::format(
          "{} ({} {}/{}/{} {}) is not listening on host {}: {}. Another process there holds that address and "
          "port, or the address is not on that host: free it, or move {} to another port",
          address_port(x.value("address", ""), x.value("port", 0)), x.value("kind", ""),
          t.value("project", ""), t.value("app", ""), t.value("env", ""), x.value("name", ""), n.value("host", ""),
          n.value("error", ""), x.value("kind", "") == "route" ? "the shared TLS listener (an operator's flag)" : "the endpoint"));
    }
  std::set<std::string> said;  // an endpoint on two addresses has two rows and one set of backends
  for (const auto& x : out["exposed"])
    for (const auto& u : x.value("unreachable", Json::array())) {
      const auto& t = x["target"];
      auto line = fmt::format("{}/{}/{} {}", t.value("project", ""), t.value("app", ""), t.value("env", ""), u.value("text", ""));
      if (said.insert(line).second) problems.push_back(std::move(line));
    }
  for (const auto& e : edges) {
    const auto host = e.value("host", "");
    const auto state = e.value("state", "");
    if (state == "absent")
      problems.push_back("the edge on host " + host + " has not asked for its config " +
                         (e["seen_seconds_ago"].is_number_integer()
                              ? "for " + short_duration(e["seen_seconds_ago"].get<std::int64_t>())
                              : std::string("yet")) +
                         ": is platform-edge running there? Until it is, nothing is served on that host");
    else if (state == "behind" && e["refused"].is_object() && e["refused"]["version"] == e["version"])
      problems.push_back("the edge on host " + host + " refused config " + version_name(e["refused"]["version"]) + ": " +
                         e["refused"].value("error", "") + "; it still serves " + version_name(e["applied_version"]) +
                         " (a platform-edge older than the control plane? its log on that host has the whole story)");
    else if (state == "behind")
      problems.push_back("the edge on host " + host + " serves config " + version_name(e["applied_version"]) + ", not " +
                         edge_wanted(e) + ": it has not taken the latest change yet (a running edge takes it within a second)");
  }
  if (problems.empty()) return;
  std::cout << "\nnot served as listed:\n";
  for (const auto& p : problems) std::cout << "  " << p << "\n";
}

void add_exposure(CLI::App& app, Globals& g) {
  auto* exposure = app.add_subcommand(
      "exposure", "Everything the org exposes to the internet: addresses, ports, SNI names, PROXY, TLS, targets "
                  "(--project, --app, --env narrow it)");
  exposure->callback([&g] {
    auto s = open_session(g);
    auto out = s.client().call("GET", "/v1/orgs/" + api::url_encode(s.need_org()) + "/exposure");
    // --project, --app and --env given here narrow the rows (a context's defaults do not: exposure is the
    // whole org unless asked otherwise); what each edge serves stays whole. The narrowest one named is
    // looked up first, so a name that does not exist says so (exit 7) instead of listing nothing.
    if (!g.project.empty() || !g.app.empty() || !g.env.empty()) {
      auto org_path = "/v1/orgs/" + api::url_encode(s.need_org());
      auto project = s.client().call("GET", org_path + "/projects/" + api::url_encode(s.need_project()));
      std::string path = org_path + "/projects/" + api::url_encode(project.value("name", ""));
      Json app, env;
      if (!g.app.empty() || !g.env.empty()) {
        app = s.client().call("GET", path + "/apps/" + api::url_encode(s.need_app()));
        path += "/apps/" + api::url_encode(app.value("name", ""));
      }
      if (!g.env.empty()) env = s.client().call("GET", path + "/envs/" + api::url_encode(s.need_env()));
      Json rows = Json::array();
      for (auto& x : out["exposed"]) {
        const auto& t = x["target"];
        if (t.value("project", "") == project.value("name", "") &&
            (app.is_null() || t.value("app", "") == app.value("name", "")) &&
            (env.is_null() || t.value("env_id", "") == env.value("id", "")))
          rows.push_back(std::move(x));
      }
      out["exposed"] = std::move(rows);
    }
    if (g.format() == Format::json) return print_json(out);
    print_rows(g, out["exposed"],
               {"FAMILY", "ADDRESS", "PORT", "PROTO", "SNI", "PROXY", "TLS", "TARGET", "BACKENDS"}, [](const Json& x) {
                 const auto& t = x["target"];
                 return std::vector<std::string>{
                     x.value("family", "-"), x.value("address", "") == "" ? "-" : x.value("address", ""),
                     std::to_string(x.value("port", 0)), x.value("protocol", ""),
                     x["sni"].empty() ? "-" : join(x["sni"]), x.value("proxy_protocol", ""),
                     x.value("protocol", "") == "tls" ? "passthrough" : "none",
                     fmt::format("{}/{}/{} {}:{}", t.value("project", ""), t.value("app", ""), t.value("env", ""),
                                 t.value("process", ""), t.value("internal_port", 0)),
                     fmt::format("{}/{} healthy", x["backends"].value("healthy", 0), x["backends"].value("total", 0)) +
                         unreachable_text(x) + (x.contains("not_listening") ? ", NOT LISTENING" : "")};
               });
    if (!g.quiet) print_edges(out);
  });
}

}  // namespace

void describe_endpoint(const Globals& g, const Session& s, const std::string& which) {
  auto e = s.client().call("GET", s.env_path() + "/endpoints/" + api::url_encode(which));
  if (g.format() != Format::table) return print_json(e);
  std::cout << "endpoint   " << e.value("name", "") << " (" << e.value("id", "") << ", from the " << e.value("source", "")
            << ")\n";
  for (const auto& x : e["addresses"])
    std::cout << "listens    " << x.value("family", "") << " " << address_port(x.value("address", ""), e.value("port", 0))
              << " tcp" << not_listening_text(x) << "\n";
  if (e["addresses"].empty()) std::cout << "listens    nowhere yet: the env holds no address (deploy it)\n";
  std::cout << "reaches    process " << e.value("process", "") << " port " << e.value("internal_port", 0) << "\n";
  std::cout << "proxy      " << e.value("proxy_protocol", "off") << "\n";
  std::cout << "backends   " << e["backends"].value("healthy", 0) << " healthy of " << e["backends"].value("total", 0)
            << "\n";
  for (const auto& u : e.value("unreachable", Json::array()))
    std::cout << "refused    " << u.value("text", "") << "\n";
}

std::optional<std::int64_t> accept_ipv4_price(Session& s, const Globals& g, bool yes, const std::string& why) {
  auto quote = s.client().call("GET", s.env_path() + "/ips/ipv4-quote");
  if (quote["held"].is_object()) return std::nullopt;
  const auto price = quote.value("price", "");
  const auto cents = quote.value("price_cents_month", std::int64_t{0});
  if (yes) {
    note(g, why + ": " + price + " (accepted with --yes)");
    return cents;
  }
  if (!::isatty(0))
    throw PlatformError(ErrorCode::precondition_failed,
                        why + ", which costs " + price + "; that needs confirmation",
                        "Add --yes to accept the price when not on a terminal.");
  if (!ask(why + ", which costs " + price + ". Go ahead?")) throw PlatformError(ErrorCode::interrupted, "nothing allocated", "");
  return cents;
}

Json post_accepting_ipv4(Session& s, const Globals& g, bool yes, const std::string& path, Json body,
                         const std::map<std::string, std::string>& headers, std::chrono::milliseconds timeout) {
  try {
    return s.client().call("POST", path, body, headers, timeout);
  } catch (const DetailedError& e) {
    // api/ipam.cpp refuses an unaccepted IPv4 price with a detail saying so; nothing was written, so the
    // same request (and Idempotency-Key) can be sent again with the price accepted.
    std::string why;
    for (const auto& d : e.details())
      if (d.is_object() && d.value("accept", "") == "ipv4_price") why = d.value("text", "");
    if (e.error().code != ErrorCode::precondition_failed || why.empty()) throw;
    // nullopt: the env got an address meanwhile, and the request needs no price any more.
    if (auto price = accept_ipv4_price(s, g, yes, why + ": env " + s.need_env() + " gets a dedicated IPv4 address"))
      body["accept_ipv4_price_cents_month"] = *price;
    return s.client().call("POST", path, body, headers, timeout);
  }
}

void add_network_commands(CLI::App& app, Globals& g) {
  add_ip(app, g);
  add_endpoint(app, g);
  add_exposure(app, g);
}

}  // namespace platform::cli
