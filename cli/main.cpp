// platform: the CLI. `platform <noun> <verb>`, -o table|json|ndjson, stable exit codes
// (`platform help exit-codes`).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <csignal>
#include <iostream>
#include <set>

#include "cli/cli.h"
#include "engine/error.h"
#include "engine/suggest.h"
#include "engine/version.h"

extern "C" void platform_cli_on_sigint(int);

using namespace platform;

int main(int argc, char** argv) {
  std::signal(SIGINT, platform_cli_on_sigint);
  cli::Globals g;
  CLI::App app{"platform: deploy, inspect and operate services (see `platform help exit-codes`)"};
  app.name("platform");  // in every usage line, whatever path ran it
  app.set_version_flag("--version", "platform " + version_line());
  api::set_client_program("platform-cli");
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--context", g.context, "CLI context to use (env PLATFORM_CONTEXT)");
  app.add_option("--org", g.org, "Org name or ID");
  app.add_option("--project", g.project, "Project name or ID");
  app.add_option("--app", g.app, "App name or ID");
  app.add_option("--env", g.env, "Env name or ID");
  app.add_option("-o,--output", g.output, "table | json | ndjson")
      ->check(CLI::IsMember({"table", "json", "ndjson"}))
      ->capture_default_str();
  app.add_flag("-q,--quiet", g.quiet, "Only the essential output: a change prints its operation id alone; no progress notes");
  app.add_flag("--no-color", g.no_color, "No colour (output is never coloured in this version)");
  cli::add_context_commands(app, g);
  cli::add_resource_commands(app, g);
  cli::add_event_commands(app, g);
  cli::add_help_commands(app, g);
  cli::add_manifest_commands(app, g);
  cli::add_config_commands(app, g);
  cli::add_secrets_commands(app, g);
  cli::add_deploy_commands(app, g);
  cli::add_host_commands(app, g);
  cli::add_instance_commands(app, g);
  cli::add_network_commands(app, g);
  cli::add_describe_command(app, g);
  cli::add_exec_command(app, g);
  cli::add_token_commands(app, g);
  cli::add_version_command(app, g);
  cli::add_doctor_command(app, g);

  auto report = [&](const Error& e, const std::string& request_id, const Json& details = Json()) {
    if (g.format() != cli::Format::table) {
      Json err = {{"code", std::string(to_string(e.code))}, {"message", e.message}, {"hint", e.hint},
                  {"request_id", request_id}, {"exit_code", exit_code(e.code)}};
      if (!details.is_null()) err["details"] = details;
      std::cout << Json{{"error", err}}.dump(g.format() == cli::Format::json ? 2 : -1) << "\n" << std::flush;
    } else {
      if (details.is_array())
        for (const auto& d : details) std::cerr << (d.is_object() ? d.value("text", d.dump()) : d.dump()) << "\n";
      std::cerr << "error: " << e.message << "\n";
      if (!e.hint.empty()) std::cerr << "hint: " << e.hint << "\n";
      if (!request_id.empty()) std::cerr << "request id: " << request_id << "\n";
    }
    return exit_code(e.code);
  };

  if (argc == 1) {  // `platform` alone: the commands, as --help shows them (kubectl and flyctl do the same)
    std::cout << app.help();
    return 0;
  }
  try {
    // Pre-scan -o so that usage errors are also reported in the requested format.
    for (int i = 1; i + 1 < argc && std::string(argv[i]) != "--"; ++i)  // (after --: exec's command)
      if (std::string(argv[i]) == "-o" || std::string(argv[i]) == "--output") g.output = argv[i + 1];
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // The help of the command the words named so far ("platform org describe"), not of the whole CLI.
    std::string command = "platform";
    const CLI::App* at = &app;
    while (!at->get_subcommands().empty()) {
      at = at->get_subcommands().front();
      command += " " + at->get_name();
    }
    // A word where a command was due that names none: say so, with the closest command.
    std::vector<std::string> names;
    for (const auto* sub : at->get_subcommands([](const CLI::App*) { return true; })) names.push_back(sub->get_name());
    for (const auto& word : app.remaining(true)) {  // (unknown words fall through to the top)
      if (names.empty() || word.empty() || word[0] == '-') continue;
      const auto close = did_you_mean(word, std::vector<std::string_view>(names.begin(), names.end()));
      return report({ErrorCode::invalid_request, "`" + command + "` has no command \"" + word.substr(0, 60) + "\"",
                     (close.empty() ? "" : "Did you mean `" + command + " " + close + "`? ") + "See `" + command +
                         " --help`."},
                    "");
    }
    // An option the command does not have (its own, or the global ones): say so, with the closest one.
    std::vector<std::string> flags;
    for (const CLI::App* a = at; a != nullptr; a = a->get_parent())
      for (const auto* opt : a->get_options()) {
        for (const auto& l : opt->get_lnames()) flags.push_back("--" + l);
        for (const auto& s : opt->get_snames()) flags.push_back("-" + s);
      }
    std::set<std::string> after_dashes;  // exec's command: its words are not ours
    for (int i = 1, seen = 0; i < argc; ++i)
      if (seen) after_dashes.insert(argv[i]);
      else seen = std::string(argv[i]) == "--";
    for (const auto& word : app.remaining(true)) {
      if (word.size() < 2 || word[0] != '-' || (word[1] >= '0' && word[1] <= '9') || after_dashes.count(word)) continue;
      const auto flag = word.substr(0, word.find('='));
      if (std::find(flags.begin(), flags.end(), flag) != flags.end()) continue;
      // (a one-letter option is within two edits of every other: no guess for those)
      const auto close =
          flag.size() > 3 ? did_you_mean(flag, std::vector<std::string_view>(flags.begin(), flags.end())) : "";
      return report({ErrorCode::invalid_request, "`" + command + "` has no option " + flag.substr(0, 60),
                     (close.empty() ? "" : "Did you mean " + close + "? ") + "See `" + command + " --help`."},
                    "");
    }
    if (!names.empty() && at->get_require_subcommand_min() > 0) {  // (the words stopped at a noun)
      std::string all;
      for (const auto& n : names) all += (all.empty() ? "" : ", ") + n;
      return report({ErrorCode::invalid_request, "`" + command + "` needs one of its commands: " + all,
                     "See `" + command + " --help`."},
                    "");
    }
    // A missing argument: name it and say what it takes ("target is required" alone does not).
    if (dynamic_cast<const CLI::RequiredError*>(&e))
      for (const auto* opt : at->get_options())
        if (opt->get_positional() && opt->get_required() && opt->count() == 0) {
          std::string upper = opt->get_name(), what = opt->get_description();
          for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
          // "Name: a-z, …" under NAME reads "NAME: a-z, …"
          if (what.size() > upper.size() + 1 && what.compare(upper.size(), 2, ": ") == 0) {
            std::string head = what.substr(0, upper.size());
            for (auto& c : head) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
            if (head == upper) what = what.substr(upper.size() + 2);
          }
          return report({ErrorCode::invalid_request, "`" + command + "` is missing " + upper + ": " + what,
                         "See `" + command + " --help`."},
                        "");
        }
    return report({ErrorCode::invalid_request, e.what(), "See `" + command + " --help`."}, "");
  } catch (const cli::ExitWith& e) {
    return e.code;
  } catch (const cli::DetailedError& e) {
    return report(e.error(), e.request_id(), e.details());
  } catch (const PlatformError& e) {
    return report(e.error(), e.request_id());
  } catch (const std::exception& e) {
    return report({ErrorCode::internal, e.what(), ""}, "");
  }
  return 0;
}
