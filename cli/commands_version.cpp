// platform version: the CLI's build and the server's (GET /v1/version), and whether they and the
// database's schema agree. platform --version: the CLI's alone.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/cli.h"
#include "engine/version.h"

namespace platform::cli {

namespace {
std::string names_of(const Json& list) {
  std::string out;
  for (const auto& n : list) out += (out.empty() ? "" : ", ") + n.get<std::string>();
  return out;
}

}  // namespace

std::vector<std::string> version_warnings(const Json& server) {
  std::vector<std::string> out;
  if (!server["version"].is_string())
    return {"the server has no GET /v1/version, so it is older than this CLI (" + build_info().version +
            "): commands it lacks fail with a 404; use a CLI of the server's release or upgrade the server"};
  const auto theirs = server["version"].get<std::string>();
  if (release_line(theirs) != release_line(build_info().version))
    out.push_back("this CLI is " + build_info().version + " and the server " + theirs +
                  ": commands one of them lacks fail (a 404 or an unknown field); use a CLI of the server's "
                  "release (" + release_line(theirs) + ".x)");
  const Json schema = server.value("schema", Json());
  if (schema.is_object()) {
    if (!schema.value("unknown", Json::array()).empty())
      out.push_back("the database has migrations this server does not carry (" + names_of(schema["unknown"]) +
                    "): a newer platformd applied them; upgrade this one");
    if (!schema.value("pending", Json::array()).empty())
      out.push_back("the database lacks migrations this server carries (" + names_of(schema["pending"]) +
                    "): run `platformd migrate` (platformd serve applies them when it starts)");
  }
  return out;
}

void add_version_command(CLI::App& app, Globals& g) {
  auto client_only = std::make_shared<bool>(false);
  auto* version = app.add_subcommand("version", "The CLI's build and the server's (version, commit), API and database schema");
  version->add_flag("--client", *client_only, "Only the CLI's build (no request; works without a login)");
  version->footer(
      "\nExamples:\n"
      "  platform version\n"
      "  platform version --client -o json | jq -r .client.version\n"
      "  platform -o json version | jq -r .server.commit     # which build answers this context\n");
  version->callback([&g, client_only] {
    const Json client = {{"version", build_info().version}, {"commit", build_info().commit}};
    if (*client_only) {
      if (g.format() != Format::table) return print_json({{"client", client}});
      std::cout << "client  platform " << version_line() << "\n";
      return;
    }
    if (g.format() == Format::table) std::cout << "client  platform " << version_line() << "\n" << std::flush;
    std::optional<Session> session;
    Json server;
    try {
      session = open_session(g);
      server = session->client().call("GET", "/v1/version");
    } catch (const PlatformError& e) {
      const auto code = e.error().code;
      // A server from before GET /v1/version: older than this CLI, whatever its version is.
      if (code == ErrorCode::not_found) {
        server = {{"version", nullptr}, {"commit", nullptr}};
      } else if (code == ErrorCode::unauthenticated || code == ErrorCode::unavailable || code == ErrorCode::timed_out) {
        throw PlatformError(code, "cannot ask the server for its version: " + e.error().message,
                            e.error().hint + " (`platform version --client` prints the CLI's alone.)");
      } else {
        throw;
      }
    }
    const auto& s = *session;
    const auto warnings = version_warnings(server);
    if (g.format() != Format::table) {
      Json w = Json::array();
      for (const auto& line : warnings) w.push_back(line);
      return print_json({{"client", client}, {"server", server}, {"url", s.ctx.url}, {"warnings", w}});
    }
    if (server["version"].is_string())
      std::cout << "server  platformd " << server["version"].get<std::string>() << " (commit "
                << server.value("commit", "?") << "), API " << server.value("api", "?") << ", at " << s.ctx.url << "\n";
    else
      std::cout << "server  older than this CLI (no version endpoint), at " << s.ctx.url << "\n";
    const Json schema = server.value("schema", Json());
    if (!server["version"].is_string()) {
      // (an older server: nothing more to ask it)
    } else if (schema.is_object()) {
      const bool agree = schema.value("unknown", Json::array()).empty() && schema.value("pending", Json::array()).empty();
      std::cout << "schema  " << schema.value("database", "")
                << (agree ? " (as the server expects)" : " (the server carries up to " + schema.value("binary", "") + ")")
                << "\n";
    } else {
      std::cout << "schema  unknown: the server cannot reach its database (see `curl " << s.ctx.url << "/healthz`)\n";
    }
    std::cout << std::flush;
    for (const auto& line : warnings) std::cerr << "warning: " << line << "\n";
  });
}

}  // namespace platform::cli
