// platform login, platform whoami, platform context list|use|show
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "cli/cli.h"
#include "engine/error.h"

namespace platform::cli {

void add_context_commands(CLI::App& app, Globals& g) {
  struct LoginArgs {
    std::string token, url = "http://127.0.0.1:7070", name = "default";
  };
  auto la = std::make_shared<LoginArgs>();
  auto* login = app.add_subcommand("login", "Save an API URL and token as a context and make it current");
  login->add_option("--token", la->token, "API token (plt_...); '-' reads it from stdin")->required();
  login->add_option("--url", la->url, "API URL")->capture_default_str();
  login->add_option("--name", la->name, "Context name")->capture_default_str();
  login->callback([&g, la] {
    if (la->token == "-") std::getline(std::cin, la->token);
    api::Client client(la->url, la->token);
    Json who;
    try {
      who = client.call("GET", "/v1/whoami");
    } catch (const PlatformError& e) {
      if (e.error().code != ErrorCode::unauthenticated) throw;
      // The server's hint says to log in, which is what failed: say where a good token comes from.
      throw PlatformErrorWithRequest(
          {ErrorCode::unauthenticated, e.error().message + " (nothing was saved)",
           "Check the token you passed: `platform token create` (with a working token) or `platformd token create "
           "--user NAME` issues one, and `platformd dev` keeps "
           "its admin token in the admin-token file of its state folder (it prints where)."},
          e.request_id());
    }
    auto cfg = load_config();
    auto& c = cfg.contexts[la->name];
    c.url = la->url;
    c.token = la->token;
    if (c.org.empty() && !who["orgs"].empty()) c.org = who["orgs"][0].value("name", "");
    cfg.current = la->name;
    save_config(cfg);
    if (g.format() != Format::table) return print_json({{"context", la->name}, {"url", la->url}, {"whoami", who}});
    std::cout << "logged in to " << la->url << " as " << who.value("user", "") << "; context \"" << la->name
              << "\" is current (org " << (c.org.empty() ? "none" : c.org) << ")\n";
  });

  auto* ctx = app.add_subcommand("context", "CLI contexts: which API, token and default org/project/app/env");
  ctx->require_subcommand(1);
  auto* list = ctx->add_subcommand("list", "List contexts");
  list->callback([&g] {
    auto cfg = load_config();
    if (g.format() != Format::table) {
      Json arr = Json::array();
      for (const auto& [name, c] : cfg.contexts)
        arr.push_back({{"name", name}, {"current", name == cfg.current}, {"url", c.url}, {"org", c.org},
                       {"project", c.project}, {"app", c.app}, {"env", c.env}});
      return print_json({{"contexts", arr}, {"current", cfg.current}});
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& [name, c] : cfg.contexts)
      rows.push_back({name == cfg.current ? "*" : "", name, c.url, c.org, c.project, c.app, c.env});
    print_table({"CUR", "NAME", "URL", "ORG", "PROJECT", "APP", "ENV"}, rows);
  });

  struct UseArgs {
    std::string name, org, project, app, env;
  };
  auto ua = std::make_shared<UseArgs>();
  auto* use = ctx->add_subcommand("use", "Make a context current, optionally setting its defaults");
  use->add_option("name", ua->name, "Context name")->required();
  use->add_option("--set-org", ua->org, "Default org");
  use->add_option("--set-project", ua->project, "Default project");
  use->add_option("--set-app", ua->app, "Default app");
  use->add_option("--set-env", ua->env, "Default env");
  use->callback([&g, ua] {
    auto cfg = load_config();
    auto it = cfg.contexts.find(ua->name);
    if (it == cfg.contexts.end())
      throw PlatformError(ErrorCode::not_found, "no context named \"" + ua->name + "\"", "See `platform context list`.");
    if (!ua->org.empty()) it->second.org = ua->org;
    if (!ua->project.empty()) it->second.project = ua->project;
    if (!ua->app.empty()) it->second.app = ua->app;
    if (!ua->env.empty()) it->second.env = ua->env;
    cfg.current = ua->name;
    save_config(cfg);
    note(g, "context \"" + ua->name + "\" is current");
  });

  auto* whoami = app.add_subcommand("whoami", "Who the CLI acts as: user, token (its org and expiry), orgs, API");
  whoami->callback([&g] {
    auto s = open_session(g);
    auto who = s.client().call("GET", "/v1/whoami");
    if (g.format() != Format::table) return print_json(who);
    std::string orgs;
    for (const auto& o : who.value("orgs", Json::array()))
      orgs += (orgs.empty() ? "" : ", ") + o.value("name", "") + " (" + o.value("role", "") + ")";
    const auto& expires = who["token_expires_at"];
    // A token of one org: whoami lists that org alone.
    const auto restricted = who.value("org_restriction", "");
    const auto scope = restricted.empty() ? std::string("every org")
                                          : "org " + (who["orgs"].empty() ? restricted : who["orgs"][0].value("name", restricted)) + " only";
    std::cout << "user   " << who.value("user", "") << " (" << who.value("user_id", "") << ")\n"
              << "token  " << who.value("token_id", "") << ", "
              << scope << ", "
              << (expires.is_string() ? "expires " + expires.get<std::string>() : std::string("never expires")) << "\n"
              << "orgs   " << (orgs.empty() ? "(none)" : orgs) << "\n"
              << "api    " << s.ctx.url << " (" << settings_source(s) << ")\n"
              << std::flush;
  });

  auto* show = ctx->add_subcommand("show", "Show the effective context (flags and environment applied)");
  show->callback([&g] {
    auto s = open_session(g);
    Json j = {{"context", s.context_name}, {"url", s.ctx.url}, {"org", s.ctx.org}, {"project", s.ctx.project},
              {"app", s.ctx.app}, {"env", s.ctx.env}, {"config", config_path()}};
    if (g.format() != Format::table) return print_json(j);
    for (const char* k : {"context", "url", "org", "project", "app", "env", "config"}) {
      const auto v = j[k].get<std::string>();
      std::cout << k << std::string(10 - std::string_view(k).size(), ' ') << (v.empty() ? "-" : v) << "\n";
    }
  });
}

}  // namespace platform::cli
