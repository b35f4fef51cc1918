// platform token create|list|revoke: the API tokens of the user the CLI logs in as (docs/tokens.md).
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/cli.h"
#include "engine/error.h"

namespace platform::cli {
namespace {

struct CreateArgs {
  std::string description, ttl;
  bool all_orgs = false;
};

std::string org_cell(const Json& t) {
  const auto id = t.value("org_id", "");
  return id.empty() ? "(every org)" : t.value("org_name", id);
}

std::string nullable(const Json& t, const char* key, const char* none) {
  return t.contains(key) && t[key].is_string() ? t[key].get<std::string>() : none;
}

void run_create(const Globals& g, const CreateArgs& a) {
  auto s = open_session(g);
  if (a.description.empty())
    throw PlatformError(ErrorCode::invalid_request, "--description is empty",
                        "Say what the token is for (e.g. --description \"CI deploys of shop\"): `platform token list` "
                        "shows it when you decide which token to revoke.");
  Json body = {{"description", a.description}};
  if (!a.ttl.empty()) body["ttl"] = a.ttl;
  // The least a token can do by default: the org the CLI works in; --all-orgs for every org of the user.
  if (a.all_orgs && !g.org.empty())
    throw PlatformError(ErrorCode::invalid_request, "--org and --all-orgs contradict each other",
                        "Give one: --org NAME for a token of that org alone, --all-orgs for one of every org you are in.");
  if (!a.all_orgs) {
    if (s.ctx.org.empty())
      throw PlatformError(ErrorCode::invalid_request, "no org for the token",
                          "Pass --org NAME for a token of that org alone, or --all-orgs for one of every org you are in.");
    body["org"] = s.ctx.org;
  }
  auto t = s.client().call("POST", "/v1/tokens", body);
  if (g.quiet && g.format() == Format::table) {
    std::cout << t.value("token", "") << std::endl;  // the secret alone: TOKEN=$(platform token create -q ...)
    return;
  }
  if (g.format() != Format::table) return print_json(t);
  std::cout << "token    " << t.value("token", "") << "\n"
            << "         shown once: store it now (a CI secret, a password manager); only its hash is kept\n"
            << "id       " << t.value("id", "") << "\n"
            << "user     " << t.value("user", "") << "\n"
            << "org      " << org_cell(t) << "\n"
            << "expires  " << nullable(t, "expires_at", "never") << "\n"
            << "next:\n"
            << "  platform login --token - --name NAME < FILE      # a context that uses it\n"
            << "  PLATFORM_TOKEN=... platform status ...           # or for one command, as CI does\n"
            << "  platform token revoke " << t.value("id", "") << "\n"
            << std::flush;
}

void run_list(const Globals& g) {
  auto s = open_session(g);
  auto out = s.client().call("GET", "/v1/tokens");
  if (g.format() == Format::json) return print_json(out);
  if (g.format() == Format::ndjson) {
    for (const auto& t : out["tokens"]) std::cout << t.dump() << "\n";
    return;
  }
  const auto current = out.value("current_token_id", "");
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : out["tokens"])
    rows.push_back({(t.value("id", "") == current ? "*" : "") + t.value("id", ""), t.value("state", ""), org_cell(t),
                    t.value("created_at", "").substr(0, 19), nullable(t, "expires_at", "never").substr(0, 19),
                    nullable(t, "last_used_at", "never").substr(0, 16), t.value("description", "")});
  print_table({"ID", "STATE", "ORG", "CREATED", "EXPIRES", "LAST USED", "DESCRIPTION"}, rows);
  note(g, "* marks the token this CLI uses. Revoke one with `platform token revoke ID`.");
}

void run_revoke(const Globals& g, const std::string& id) {
  auto s = open_session(g);
  auto t = s.client().call("DELETE", "/v1/tokens/" + api::url_encode(id));
  if (g.format() != Format::table) return print_json(t);
  if (t.value("already_revoked", false)) {
    std::cout << "token " << t.value("id", "") << " (" << t.value("description", "") << ") was revoked already, at "
              << nullable(t, "revoked_at", "?") << "\n";
    return;
  }
  std::cout << "token " << t.value("id", "") << " (" << t.value("description", "") << ") revoked at "
            << nullable(t, "revoked_at", "?") << ": every request with it fails from now on\n";
  if (t.value("current", false))
    note(g, "That was the token this CLI uses: log in with another (`platform login --token - --name " +
                s.context_name + "`).");
}

}  // namespace

void add_token_commands(CLI::App& app, Globals& g) {
  auto* token = app.add_subcommand("token", "Your API tokens: create one for CI or a teammate's script, list, revoke");
  token->require_subcommand(1);

  auto ca = std::make_shared<CreateArgs>();
  auto* create = token->add_subcommand("create", "Create a token (the secret is printed once; -q prints it alone)");
  create->add_option("--description", ca->description, "What it is for (required; the list shows it)")->required();
  create->add_option("--ttl", ca->ttl, "Expire after this long (1m to 3650d, e.g. 90d); default: never");
  create->add_flag("--all-orgs", ca->all_orgs, "Valid in every org you are in (default: only the --org or context's org)");
  create->footer(
      "Examples:\n"
      "  platform token create --description \"CI deploys of shop\" --ttl 90d --org acme\n"
      "  TOKEN=$(platform token create -q --description ci --ttl 30d)   # the secret alone");
  create->callback([&g, ca] { run_create(g, *ca); });

  auto* list = token->add_subcommand("list", "Your tokens: state (active, expired, revoked), org, expiry, description");
  list->callback([&g] { run_list(g); });

  auto id = std::make_shared<std::string>();
  auto* revoke = token->add_subcommand("revoke", "Revoke a token: every request with it fails from then on");
  revoke->add_option("id", *id, "Token ID (tok_…), as `platform token list` shows it")->required();
  revoke->callback([&g, id] { run_revoke(g, *id); });
}

}  // namespace platform::cli
