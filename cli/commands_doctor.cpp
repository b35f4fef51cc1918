// platform doctor: is the CLI set up, and is the platform it talks to well? One line a check, each
// with what to do when it is not: the settings, the API and its database, the builds, the token, the
// hosts (operators), the edges serving the org's exposure, and the env in the context. Exit 0 when
// nothing failed (warnings included), 1 when something did.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>

#include "cli/cli.h"
#include "engine/version.h"

namespace platform::cli {
namespace {

struct Check {
  std::string name, result, detail, hint;  // result: ok | warn | fail | skip
};

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

// The API's answer, or the error it gave: a doctor keeps going where a command would stop.
struct Answer {
  int status = 0;  // 0: no usable answer (unreachable, timed out, not a JSON object)
  Json body;
  std::string error, hint;
  std::vector<std::string> warnings;
};

Answer ask(const api::Client& client, const std::string& target) {
  Answer a;
  try {
    auto r = client.request("GET", target, {}, {}, std::chrono::seconds(10));
    a.status = r.status;
    a.warnings = r.warnings;
    try {
      a.body = Json::parse(r.body);
    } catch (const std::exception&) {
    }
    if (!a.body.is_object()) {  // something else listens there, or a proxy answered
      a.status = 0;
      a.body = Json::object();
      a.error = "GET " + target + " answered HTTP " + std::to_string(r.status) + " with something other than a JSON object";
    } else if (r.status >= 400) {
      a.error = a.body.value("message", "HTTP " + std::to_string(r.status));
      a.hint = a.body.value("hint", "");
    }
  } catch (const PlatformError& e) {
    if (e.error().code == ErrorCode::interrupted) throw;  // Ctrl-C ends the doctor, not just one check
    a.error = e.error().message;
  }
  return a;
}

Check check_api(const Session& s, const api::Client& client, bool* reachable) {
  auto h = ask(client, "/healthz");
  *reachable = h.status != 0;
  if (h.status == 0)
    return {"api", "fail", h.error,
            "Is platformd running there? `platformd dev` starts one; `platform context show` says which URL is used."};
  std::vector<std::string> parts;
  const auto checks = h.body.value("checks", Json::object());  // named: items() of a temporary dangles
  for (const auto& [k, v] : checks.items())
    parts.push_back(k + " " + (v.is_string() ? v.get<std::string>() : v.dump()));
  const auto detail = s.ctx.url + " answers; " + join(parts, ", ");
  if (h.status != 200)
    return {"api", "fail", detail, "The server is up but not ready: its log says why (a database it cannot reach?)."};
  return {"api", "ok", detail, ""};
}

Check check_version(const api::Client& client) {
  auto v = ask(client, "/v1/version");
  if (v.status == 404)
    return {"version", "warn", "the server is older than this CLI (it has no /v1/version)",
            "Use a CLI of the server's release, or upgrade the server (docs/upgrades.md)."};
  if (v.status != 200) return {"version", "fail", "GET /v1/version: " + v.error, ""};
  const auto detail = "client " + version_line() + ", server " + v.body.value("version", "?") + " (commit " +
                      v.body.value("commit", "?") + ")";
  const auto warnings = version_warnings(v.body);
  if (!warnings.empty()) return {"version", "warn", detail + "; " + join(warnings, "; "), "See docs/upgrades.md."};
  return {"version", "ok", detail, ""};
}

Check check_token(const api::Client& client) {
  auto w = ask(client, "/v1/whoami");
  if (w.status == 401)
    return {"token", "fail", w.error,
            "Log in with a working token: `platform login --url URL --token -` (docs/tokens.md)."};
  if (w.status != 200) return {"token", "fail", "GET /v1/whoami: " + w.error, ""};
  const auto& expires = w.body["token_expires_at"];
  const auto restricted = w.body.value("org_restriction", "");
  const auto detail = "user " + w.body.value("user", "") + ", token " + w.body.value("token_id", "") + " (" +
                      (restricted.empty() ? "every org" : "one org") + ", " +
                      (expires.is_string() ? "expires " + expires.get<std::string>() : std::string("never expires")) + ")";
  // The server warns about a token in its last week; that warning is the doctor's finding too.
  for (const auto& warning : w.warnings)
    if (warning.rfind("token ", 0) == 0) return {"token", "warn", warning, ""};
  return {"token", "ok", detail, ""};
}

Check check_hosts(const api::Client& client) {
  auto h = ask(client, "/v1/hosts");
  if (h.status == 404) return {"hosts", "skip", "not a platform operator: hosts are theirs to see", ""};
  if (h.status != 200) return {"hosts", "fail", "GET /v1/hosts: " + h.error, ""};
  std::vector<std::string> down, no_runtime;
  std::size_t up = 0;
  const auto hosts = h.body.value("hosts", Json::array());
  for (const auto& host : hosts) {
    const auto name = host.value("name", "");
    if (host.value("state", "") != "up") down.push_back(name);
    else if (host.value("runtime", Json::object()).value("name", "") == "none") no_runtime.push_back(name);
    else ++up;
  }
  const auto total = hosts.size();
  if (total == 0)
    return {"hosts", "fail", "no host is enrolled: nothing can run instances",
            "Enrol one: `platform host join-token`, then `platform-agent --join TOKEN` there (docs/hosts.md)."};
  auto detail = std::to_string(up) + " of " + std::to_string(total) + " can run instances";
  if (!down.empty()) detail += "; down: " + join(down, ", ");
  if (!no_runtime.empty()) detail += "; no runtime: " + join(no_runtime, ", ");
  if (up == 0)
    return {"hosts", "fail", detail, "`platform host describe NAME` says why (docs/hosts.md)."};
  if (!down.empty() || !no_runtime.empty())
    return {"hosts", "warn", detail, "`platform host describe NAME` says why (docs/hosts.md)."};
  return {"hosts", "ok", detail, ""};
}

// What the org exposes and whether each host's edge serves it (the rows of `platform exposure`).
Check check_edges(const Session& s, const api::Client& client) {
  if (s.ctx.org.empty()) return {"edges", "skip", "no org selected (--org or the context's)", ""};
  auto x = ask(client, "/v1/orgs/" + api::url_encode(s.ctx.org) + "/exposure");
  if (x.status != 200) return {"edges", "fail", "org " + s.ctx.org + ": " + x.error, x.hint};
  const auto exposed = x.body.value("exposed", Json::array()).size();
  const auto edges = x.body.value("edges", Json::array());
  const auto listed = std::to_string(exposed) + " address" + (exposed == 1 ? "" : "es") + " and port" +
                      (exposed == 1 ? "" : "s") + " exposed";
  if (edges.empty())
    return exposed == 0 ? Check{"edges", "ok", "org " + s.ctx.org + " exposes nothing yet", ""}
                        : Check{"edges", "fail", listed + ", and no platform-edge has asked for its config",
                                "Run platform-edge on each host that runs instances (docs/network.md#the-edges-config)."};
  std::vector<std::string> off;
  for (const auto& e : edges)
    if (e.value("state", "") != "current") off.push_back(e.value("host", "") + " " + e.value("state", ""));
  const auto detail = listed + "; " + std::to_string(edges.size() - off.size()) + " of " +
                      std::to_string(edges.size()) + " edges serve the present config" +
                      (off.empty() ? std::string() : " (" + join(off, ", ") + ")");
  if (!off.empty()) return {"edges", "warn", detail, "`platform exposure` says why, under its table."};
  return {"edges", "ok", detail, ""};
}

Check check_env(const Session& s, const api::Client& client) {
  if (s.ctx.org.empty() || s.ctx.project.empty() || s.ctx.app.empty() || s.ctx.env.empty())
    return {"env", "skip", "no env selected (--project, --app, --env or the context's)", ""};
  const auto name = s.ctx.project + "/" + s.ctx.app + "/" + s.ctx.env;
  auto st = ask(client, s.env_path() + "/status?traffic=false");
  if (st.status != 200)
    return {"env", "fail", name + ": " + st.error, st.hint};
  const auto phase = st.body.value("phase", "");
  const auto& rel = st.body["release"];
  auto detail = name + " " + phase + (rel.is_object() ? ", release " + rel.value("name", "") : std::string());
  const auto problems = st.body.value("problems", Json::array());
  if (!problems.empty() && problems[0].is_string()) detail += "; " + problems[0].get<std::string>();
  const auto flags = s.env_flags();
  if (phase == "converged") return {"env", "ok", detail, ""};
  if (phase == "no_release") return {"env", "warn", detail, "Deploy it: `platform deploy --image REF" + flags + "`."};
  if (phase == "progressing") return {"env", "warn", detail, "Follow it: `platform wait" + flags + "`."};
  return {"env", "fail", detail, "`platform status" + flags + "` and `platform logs -n 50" + flags + "` say why."};
}

}  // namespace

void add_doctor_command(CLI::App& app, Globals& g) {
  auto* doctor = app.add_subcommand(
      "doctor", "Check the CLI's settings and the platform it talks to: API, database, builds, token, hosts, edges, env");
  doctor->footer(
      "\nEach check is ok, warn, fail or skip, with what to do. Exit 0 when none failed, 1 when one did.\n"
      "\nExamples:\n"
      "  platform doctor\n"
      "  platform doctor --project shop --app api --env prod\n"
      "  platform -o json doctor | jq '.checks[] | select(.result != \"ok\")'\n");
  doctor->callback([&g] {
    std::vector<Check> checks;
    std::optional<Session> session;
    try {
      session = open_session(g);
      checks.push_back({"settings", "ok", session->ctx.url + " (" + settings_source(*session) + "; " + config_path() + ")", ""});
    } catch (const PlatformError& e) {
      checks.push_back({"settings", "fail", e.error().message, e.error().hint});
    }
    if (session) {
      // A client that keeps the server's warnings to itself: the doctor reports them as findings.
      api::Client client(session->ctx.url, session->ctx.token);
      client.set_interrupt(interrupted);
      bool reachable = false;
      checks.push_back(check_api(*session, client, &reachable));
      if (reachable) {
        checks.push_back(check_version(client));
        checks.push_back(check_token(client));
        if (checks.back().result != "fail") {
          checks.push_back(check_hosts(client));
          checks.push_back(check_edges(*session, client));
          checks.push_back(check_env(*session, client));
        }
      }
    }
    const bool failed = std::any_of(checks.begin(), checks.end(), [](const Check& c) { return c.result == "fail"; });
    if (g.format() != Format::table) {
      Json arr = Json::array();
      for (const auto& c : checks)
        arr.push_back({{"name", c.name}, {"result", c.result}, {"detail", c.detail}, {"hint", c.hint}});
      print_json({{"ok", !failed}, {"checks", arr}});
    } else {
      std::vector<std::vector<std::string>> rows;
      for (const auto& c : checks) rows.push_back({c.name, c.result, c.detail});
      print_table({"CHECK", "RESULT", "DETAIL"}, rows);
      for (const auto& c : checks)
        if (!c.hint.empty() && c.result != "ok") std::cout << "\n" << c.name << ": " << c.hint;
      const bool hinted =
          std::any_of(checks.begin(), checks.end(), [](const Check& c) { return !c.hint.empty() && c.result != "ok"; });
      std::cout << (hinted ? "\n" : "") << std::flush;
    }
    if (failed) throw ExitWith{1};
  });
}

}  // namespace platform::cli
