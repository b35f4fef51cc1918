// platform config list|set|unset: an env's visible variables, versioned (docs/config.md).
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/cli.h"
#include "engine/ids.h"

namespace platform::cli {
namespace {

std::string one_line(std::string v, std::size_t max = 60) {
  if (auto nl = v.find('\n'); nl != std::string::npos) v = v.substr(0, nl) + " …";
  if (v.size() > max) v = v.substr(0, max) + "…";
  return v;
}

}  // namespace

void add_config_commands(CLI::App& app, Globals& g) {
  auto* config = app.add_subcommand("config", "An env's config: visible variables, versioned (--env selects the env)");
  config->require_subcommand(1);

  auto* list = config->add_subcommand("list", "Every variable with its value and the version that set it");
  list->callback([&g] {
    auto s = open_session(g);
    auto out = s.client().call("GET", s.env_path() + "/config");
    if (g.format() != Format::table) return print_json(out);
    std::vector<std::vector<std::string>> rows;
    for (const auto& [name, v] : out["values"].items())
      rows.push_back({name, one_line(v.value("value", "")), std::to_string(v.value("version", 0)),
                      v.value("set_by", ""), v.value("set_at", "")});
    print_table({"NAME", "VALUE", "VERSION", "SET BY", "SET AT"}, rows);
    note(g, "config version " + std::to_string(out.value("version", 0)) + " of " + out.value("path", ""));
  });

  auto pairs = std::make_shared<std::vector<std::string>>();
  auto idem = std::make_shared<std::string>();
  auto* set = config->add_subcommand("set", "Set variables: a new config version (values are visible; use secrets for secrets)");
  set->add_option("pairs", *pairs, "NAME=VALUE ...")->required();
  set->add_option("--idempotency-key", *idem, "Make a retried request safe");
  set->callback([&g, pairs, idem] {
    Json values = Json::object();
    for (const auto& p : *pairs) {
      auto eq = p.find('=');
      if (eq == std::string::npos || eq == 0)
        throw PlatformError(ErrorCode::invalid_request, "\"" + p.substr(0, 80) + "\" is not NAME=VALUE",
                            "e.g. platform config set LOG_LEVEL=debug");
      values[p.substr(0, eq)] = p.substr(eq + 1);
    }
    auto s = open_session(g);
    print_receipt(g, s.client().call("PATCH", s.env_path() + "/config", Json{{"set", values}}, idem->empty() ? new_id("idem") : *idem));
  });

  auto names = std::make_shared<std::vector<std::string>>();
  auto* unset = config->add_subcommand("unset", "Remove variables: a new config version (names that are not set are ignored)");
  unset->add_option("names", *names, "NAME ...")->required();
  unset->add_option("--idempotency-key", *idem, "Make a retried request safe");
  unset->callback([&g, names, idem] {
    auto s = open_session(g);
    print_receipt(g, s.client().call("PATCH", s.env_path() + "/config", Json{{"unset", *names}}, idem->empty() ? new_id("idem") : *idem));
  });
}

}  // namespace platform::cli
