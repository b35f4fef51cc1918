// platform help exit-codes, platform completion bash|zsh
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
    {1, "error (server error, unreachable API, unexpected failure; `wait`: the rollout failed)"},
    {2, "usage or invalid input (bad flag, malformed or unknown field, invalid name)"},
    {3, "`diff` found differences"},
    {4, "timed out or not converged (`wait --timeout`)"},
    {5, "placement or capacity"},
    {6, "precondition failed (conflict, stale version, name taken, idempotency key reused, children exist; `wait`: a port cannot listen)"},
    {7, "not found (also: another org's resource)"},
    {8, "authentication (missing, unknown or revoked token)"},
    {10, "not supported in v1 (the message says what to do instead)"},
    {130, "interrupted (Ctrl-C)"},
};

struct CommandPath {
  std::string path;         // "org create"
  std::string subcommands;  // words that extend the path
  std::string words;        // everything that may follow: subcommands and --options
};

// Every command path with the words that may follow it, walked from the CLI11 tree.
void collect(const CLI::App* app, const std::string& path, std::vector<CommandPath>& out) {
  CommandPath cp{path, "", ""};
  auto subs = app->get_subcommands([](const CLI::App*) { return true; });
  for (const auto* sub : subs) cp.subcommands += sub->get_name() + " ";
  cp.words = cp.subcommands;
  for (const auto* opt : app->get_options())
    for (const auto& l : opt->get_lnames()) cp.words += "--" + l + " ";
  out.push_back(cp);
  for (const auto* sub : subs) collect(sub, path.empty() ? sub->get_name() : path + " " + sub->get_name(), out);
}

// Bash completion (zsh loads it through bashcompinit). Only words that name a subcommand of the path so
// far extend it, so flag values (`--org dev`) do not derail completion.
void print_completion(const std::vector<CommandPath>& paths, const std::string& shell) {
  if (shell == "zsh")
    std::cout << "# platform zsh completion: source <(platform completion zsh)\n"
                 "autoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit\n";
  else
    std::cout << "# platform bash completion: source <(platform completion bash)\n";
  std::cout << "_platform_subcommands() {\n  case \"$1\" in\n";
  for (const auto& p : paths) std::cout << "    \"" << p.path << "\") echo \"" << p.subcommands << "\";;\n";
  std::cout << "  esac\n}\n_platform() {\n  local cur path i w\n  cur=\"${COMP_WORDS[COMP_CWORD]}\"\n  path=\"\"\n"
               "  for ((i=1; i<COMP_CWORD; i++)); do\n    for w in $(_platform_subcommands \"$path\"); do\n"
               "      if [[ \"$w\" == \"${COMP_WORDS[i]}\" ]]; then path=\"${path:+$path }$w\"; break; fi\n"
               "    done\n  done\n  local words=\"\"\n  case \"$path\" in\n";
  for (const auto& p : paths) std::cout << "    \"" << p.path << "\") words=\"" << p.words << "\";;\n";
  std::cout << "  esac\n  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n}\ncomplete -F _platform platform\n";
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
  auto* completion = app.add_subcommand("completion", "Print a shell completion script (bash or zsh)");
  completion->add_option("shell", *shell, "bash or zsh")->check(CLI::IsMember({"bash", "zsh"}));
  completion->callback([&app, shell] {
    std::vector<CommandPath> paths;
    collect(&app, "", paths);
    print_completion(paths, *shell);
  });
}

}  // namespace platform::cli
