// platform host join-token|list|describe: the platform's hosts (platform operators; docs/hosts.md).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <iostream>

#include "cli/cli.h"

namespace platform::cli {
namespace {

std::string age(double seconds) { return short_duration(static_cast<std::int64_t>(seconds)) + " ago"; }

// "0.1.0 (commit 3f1c2a9b7d0e)" of a {version, commit}; "unknown (…)" for a part too old to say.
std::string build_of(const Json& version, const Json& commit, const std::string& who) {
  if (!version.is_string() || version.get<std::string>().empty())
    return "unknown (" + who + " too old to report it)";
  return version.get<std::string>() + (commit.is_string() && !commit.get<std::string>().empty()
                                           ? " (commit " + commit.get<std::string>() + ")"
                                           : std::string());
}

// The host's edge: which config it serves of which, and anything it does not serve.
void print_host_edge(const Json& e) {
  if (!e.is_object()) {
    std::cout << "edge       none has asked for this host's config: run platform-edge there (docs/network.md)\n";
    return;
  }
  const Json build = e.value("build", Json());
  std::cout << "edge       " << e.value("state", "") << ": serves config " << version_name(e["applied_version"])
            << " of " << edge_wanted(e) << ", last asked "
            << (e["seen_seconds_ago"].is_number_integer() ? age(e["seen_seconds_ago"].get<double>()) : std::string("never"))
            << "; build "
            << build_of(build.is_object() ? build.value("version", Json()) : Json(),
                        build.is_object() ? build.value("commit", Json()) : Json(), "an edge")
            << "\n";
  for (const auto& u : e.value("unbound", Json::array()))
    std::cout << "           not listening: " << u.value("kind", "") << " "
              << address_port(u.value("address", ""), u.value("port", 0)) << ": " << u.value("error", "") << "\n";
  for (const auto& u : e.value("unreachable", Json::array()))
    std::cout << "           cannot connect: " << address_port(u.value("address", ""), u.value("port", 0)) << " ("
              << u.value("target", "") << "): " << u.value("error", "") << ", " << u.value("failures", 0)
              << " time(s) in a row\n";
  if (e["refused"].is_object())
    std::cout << "           refused config " << version_name(e["refused"]["version"]) << ": " << e["refused"].value("error", "")
              << "\n";
}

std::string capacity(const Json& c) {
  return std::to_string(c.value("cpus", 0)) + " cpu, " + std::to_string(c.value("memory_mib", 0)) + " MiB, " +
         std::to_string(c.value("disk_mib", 0) / 1024) + " GiB disk";
}

std::string allocated(const Json& h) {
  const auto a = h.value("allocated", Json::object());
  return fmt::format("{:g} cpu, {} MiB", a.value("cpu", 0.0), a.value("memory_mib", 0));
}

}  // namespace

void describe_host(const Globals& g, const Session& s, const std::string& which) {
  auto h = s.client().call("GET", "/v1/hosts/" + api::url_encode(which));
  if (g.format() != Format::table) return print_json(h);
  std::cout << "host       " << h.value("name", "") << " (" << h.value("id", "") << ")\n";
  std::cout << "state      " << h.value("state", "") << " since " << h.value("state_since", "") << "\n";
  std::cout << "heartbeat  " << h.value("last_heartbeat", "") << " (" << age(h.value("seconds_since_heartbeat", 0.0))
            << ")\n";
  std::cout << "capacity   " << capacity(h["capacity"]) << "\n";
  std::cout << "allocated  " << allocated(h) << " to " << h.value("instances", 0) << " instances\n";
  std::cout << "runtime    " << h["runtime"].value("name", "") << ": " << h["runtime"].value("reason", "") << "\n";
  std::cout << "agent      " << build_of(h.value("agent_version", Json()), h.value("agent_commit", Json()), "an agent")
            << "\n";
  std::cout << "enrolled   " << h.value("enrolled_at", "") << "\n";
  print_host_edge(h["edge"]);
  for (const auto& e : h.value("events", Json::array())) {
    std::string why = e["data"].value("reason", "");
    std::cout << "event      " << e.value("at", "") << " " << e.value("type", "") << (why.empty() ? "" : ": " + why)
              << "\n";
  }
}

void add_host_commands(CLI::App& app, Globals& g) {
  auto* host = app.add_subcommand("host", "The platform's hosts (platform operators)");
  host->require_subcommand(1);

  auto ttl = std::make_shared<std::string>("1h");
  auto* join = host->add_subcommand("join-token", "Issue a single-use join token for platform-agent --join");
  join->add_option("--ttl", *ttl, "How long it is valid (10s to 168h)")->capture_default_str();
  join->callback([&g, ttl] {
    auto s = open_session(g);
    auto out = s.client().call("POST", "/v1/hosts/join-tokens", Json{{"ttl", *ttl}}, std::string());
    if (g.format() != Format::table) return print_json(out);
    std::cout << out.value("token", "") << "\n";
    note(g, "single use, valid until " + out.value("expires_at", "") + "; on the new host run:");
    note(g, "  platform-agent --join " + out.value("token", "") + " --control " + s.ctx.url + " --state DIR");
  });

  auto* list = host->add_subcommand("list", "Every host: state, capacity, runtime, last heartbeat");
  list->callback([&g] {
    auto s = open_session(g);
    auto out = s.client().call("GET", "/v1/hosts");
    if (g.format() == Format::json) return print_json(out);
    if (g.format() == Format::ndjson) {
      for (const auto& h : out["hosts"]) std::cout << h.dump() << "\n";
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& h : out["hosts"])
      rows.push_back({h.value("name", ""), h.value("id", ""), h.value("state", ""), capacity(h["capacity"]),
                      allocated(h), std::to_string(h.value("instances", 0)), h["runtime"].value("name", ""),
                      h.value("agent_version", "").empty() ? "?" : h.value("agent_version", ""),
                      age(h.value("seconds_since_heartbeat", 0.0))});
    print_table({"NAME", "ID", "STATE", "CAPACITY", "ALLOCATED", "INSTANCES", "RUNTIME", "AGENT", "LAST HEARTBEAT"},
                rows);
  });

  auto which = std::make_shared<std::string>();
  auto* describe = host->add_subcommand("describe", "One host: capacity, runtime and why, heartbeat, recent events");
  describe->add_option("host", *which, "Host name or ID")->required();
  describe->callback([&g, which] {
    auto s = open_session(g);
    describe_host(g, s, *which);
  });
}

}  // namespace platform::cli
