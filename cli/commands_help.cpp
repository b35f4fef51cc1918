// platform help exit-codes, platform completion bash
#include <CLI/CLI.hpp>
#include <functional>
#include <iostream>

#include "cli/cli.h"
#include "engine/error.h"

namespace platform::cli {
namespace {

struct ExitRow {
  int code;
  const char* meaning;
};
constexpr ExitRow kExitCodes[] = {
    {0, "ok"},
    {1, "error (server error, unreachable API, unexpected failure)"},
    {2, "usage or invalid input (bad flag, malformed or unknown field, invalid name)"},
    {3, "`diff` found differences"},
    {4, "timed out or not converged (`wait --timeout`)"},
    {5, "placement or capacity"},
    {6, "precondition failed (conflict, stale version, name taken, idempotency key reused, children exist)"},
    {7, "not found (also: another org's resource)"},
    {8, "authentication (missing, unknown or revoked token)"},
    {10, "not supported in v1 (the message says what to do instead)"},
    {130, "interrupted (Ctrl-C)"},
};

// Every command path with the words that may follow it, walked from the CLI11 tree.
void collect(const CLI::App* app, const std::string& path, std::vector<std::pair<std::string, std::string>>& out) {
  std::string words;
  for (const auto* sub : app->get_subcommands([](const CLI::App*) { return true; })) words += sub->get_name() + " ";
  for (const auto* opt : app->get_options())
    for (const auto& l : opt->get_lnames()) words += "--" + l + " ";
  out.emplace_back(path, words);
  for (const auto* sub : app->get_subcommands([](const CLI::App*) { return true; }))
    collect(sub, path.empty() ? sub->get_name() : path + " " + sub->get_name(), out);
}

}  // namespace

void add_help_commands(CLI::App& app, Globals& g) {
  auto* help = app.add_subcommand("help", "Reference pages: exit-codes");
  help->require_subcommand(1);
  auto* codes = help->add_subcommand("exit-codes", "The exit codes every command uses");
  codes->callback([&g] {
    if (g.format() != Format::table) {
      Json arr = Json::array();
      for (const auto& r : kExitCodes) arr.push_back({{"code", r.code}, {"meaning", r.meaning}});
      return print_json({{"exit_codes", arr}});
    }
    std::cout << "platform exit codes (stable; scripts may rely on them):\n";
    for (const auto& r : kExitCodes) std::printf("  %3d  %s\n", r.code, r.meaning);
  });

  auto shell = std::make_shared<std::string>("bash");
  auto* completion = app.add_subcommand("completion", "Print a shell completion script (bash)");
  completion->add_option("shell", *shell, "bash")->check(CLI::IsMember({"bash"}));
  completion->callback([&app] {
    std::vector<std::pair<std::string, std::string>> paths;
    collect(&app, "", paths);
    std::cout << "# platform bash completion: source <(platform completion bash)\n_platform() {\n"
                 "  local cur path i\n  cur=\"${COMP_WORDS[COMP_CWORD]}\"\n  path=\"\"\n"
                 "  for ((i=1; i<COMP_CWORD; i++)); do\n    case \"${COMP_WORDS[i]}\" in -*) ;; *) "
                 "path=\"${path:+$path }${COMP_WORDS[i]}\";; esac\n  done\n  local words=\"\"\n  case \"$path\" in\n";
    for (const auto& [p, w] : paths) std::cout << "    \"" << p << "\") words=\"" << w << "\";;\n";
    std::cout << "  esac\n  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n}\ncomplete -F _platform platform\n";
  });
}

}  // namespace platform::cli
