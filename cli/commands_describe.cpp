// platform describe TARGET: one verb for anything with a name or an ID, as kubectl's `describe TYPE/NAME`.
// It prints exactly what `platform NOUN describe` prints; an ID alone is enough, even for the things an
// env holds (instances, releases, endpoints): the env is found for it.
#include <CLI/CLI.hpp>

#include "cli/cli.h"
#include "engine/error.h"
#include "engine/ids.h"
#include "engine/suggest.h"

namespace platform::cli {
namespace {

const std::vector<std::string_view> kKinds = {"org",     "project",  "app",  "env",      "instance",
                                              "release", "endpoint", "host", "operation"};

std::string kinds_text() {
  std::string out;
  for (const auto& k : kKinds) out += (out.empty() ? "" : ", ") + std::string(k);
  return out;
}

// The flags of the env that `names` name (org, project, app, env), over g's.
Globals at_env(const Globals& g, std::map<std::string, std::string> names) {
  Globals out = g;
  out.org = names["org"], out.project = names["project"], out.app = names["app"], out.env = names["env"];
  return out;
}

// The env that holds `id` (an instance or a release): the API's by-ID lookup names it.
Globals env_holding(const Globals& g, const Session& s, const std::string& id) {
  return at_env(g, path_names(s.client().call("GET", "/v1/resources/" + api::url_encode(id)).value("path", "")));
}

// The env of endpoint `id`, from the org's exposure (an endpoint's events are its env's). One the exposure
// does not list yet (its env holds no address) is described by name instead.
Globals env_exposing(const Globals& g, const Session& s, const std::string& id) {
  auto exposure = s.client().call("GET", "/v1/orgs/" + api::url_encode(s.need_org()) + "/exposure");
  for (const auto& x : exposure.value("exposed", Json::array()))
    if (x.value("id", "") == id)
      return at_env(g, {{"org", s.need_org()},
                        {"project", x["target"].value("project", "")},
                        {"app", x["target"].value("app", "")},
                        {"env", x["target"].value("env", "")}});
  throw PlatformError(ErrorCode::not_found, "no exposed endpoint " + id + " in org " + s.need_org(),
                      "An endpoint whose env holds no address yet is described by name: `platform endpoint describe "
                      "NAME --project P --app A --env E`.");
}

void describe_id(const Globals& g, const Session& s, const std::string& id, const std::string& prefix) {
  if (prefix == "org") return describe_resource(g, s, "org", id);
  if (prefix == "prj") return describe_resource(g, s, "project", id);
  if (prefix == "app") return describe_resource(g, s, "app", id);
  if (prefix == "env") return describe_resource(g, s, "env", id);
  if (prefix == "op") return describe_operation(g, s, id);
  if (prefix == "host") return describe_host(g, s, id);
  if (prefix == "ins") return describe_instance(g, open_session(env_holding(g, s, id)), id);
  if (prefix == "rel") return describe_release(g, open_session(env_holding(g, s, id)), id);
  if (prefix == "ep") return describe_endpoint(g, open_session(env_exposing(g, s, id)), id);
  throw PlatformError(ErrorCode::invalid_request, "`platform describe` knows no ID that starts with \"" + prefix + "_\"",
                      "It takes the IDs of orgs, projects, apps, envs, instances, releases, endpoints, hosts and "
                      "operations, or KIND/NAME (" +
                          kinds_text() + ").");
}

void run_describe(const Globals& g, const std::string& target) {
  auto s = open_session(g);
  std::string prefix;
  if (looks_like_id(target, &prefix)) return describe_id(g, s, target, prefix);
  const auto slash = target.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == target.size()) {
    std::string flags;  // the example carries the env flags when the session names an env
    try {
      flags = s.env_flags();
    } catch (const PlatformError&) {
      flags = " --project P --app A --env E";
    }
    throw PlatformError(ErrorCode::invalid_request,
                        "`platform describe` takes KIND/NAME or an ID, not \"" + target.substr(0, 80) + "\"",
                        "Say what it is, e.g. `platform describe instance/" + target.substr(0, 80) + flags +
                            "`; the kinds: " + kinds_text() + ".");
  }
  const auto kind = target.substr(0, slash), name = target.substr(slash + 1);
  // A manifest endpoint's ID is its env's ID and its name: env_…/web.
  if (looks_like_id(kind, &prefix) && prefix == "env") {
    const auto env_path = s.client().call("GET", "/v1/resources/" + api::url_encode(kind)).value("path", "");
    return describe_endpoint(g, open_session(at_env(g, path_names(env_path))), name);
  }
  if (kind == "org" || kind == "project" || kind == "app" || kind == "env") return describe_resource(g, s, kind, name);
  if (kind == "instance") return describe_instance(g, s, name);
  if (kind == "release") return describe_release(g, s, name);
  if (kind == "endpoint") return describe_endpoint(g, s, name);
  if (kind == "host") return describe_host(g, s, name);
  if (kind == "operation") return describe_operation(g, s, name);
  const auto close = did_you_mean(kind, kKinds);
  throw PlatformError(ErrorCode::invalid_request, "`platform describe` knows no kind \"" + kind.substr(0, 40) + "\"",
                      (close.empty() ? "" : "Did you mean " + close + "/" + name.substr(0, 80) + "? ") +
                          "The kinds: " + kinds_text() + "; or pass an ID.");
}

}  // namespace

void add_describe_command(CLI::App& app, Globals& g) {
  auto target = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("describe", "Describe anything by KIND/NAME or ID: app/api, instance/web-3, release/v4, ins_…, op_…");
  cmd->add_option("target", *target, "KIND/NAME (kinds: " + kinds_text() + ") or an ID")->required();
  cmd->footer(
      "Examples:\n"
      "  platform describe env/prod --project shop --app api\n"
      "  platform describe instance/web-3 --project shop --app api --env prod\n"
      "  platform describe ins_01m96ymtqnf6kb7p19qg3spr5b      # an ID alone: its env is found for you\n"
      "  platform describe op_01m96z44hmea985w0twkqhy8wm");
  cmd->callback([&g, target] { run_describe(g, *target); });
}

}  // namespace platform::cli
