// platform exec INSTANCE -- COMMAND...: run a command inside a running instance (docs/instances.md#exec).
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "cli/cli.h"
#include "cli/exec_session.h"
#include "engine/crypto.h"
#include "engine/duration.h"
#include "engine/error.h"

namespace platform::cli {
namespace {

struct ExecArgs {
  std::string instance, timeout = "30s";
  std::vector<std::string> command, env;
  bool input = false;  // --stdin
  bool interactive = false, tty = false;  // -i, -t: a session
};

constexpr std::size_t kMaxInput = 512 << 10;

// All of our stdin, for --stdin (a file or a pipe; at most kMaxInput).
std::string read_input() {
  std::string data;
  char buf[65536];
  while (std::cin.read(buf, sizeof buf) || std::cin.gcount() > 0) {
    data.append(buf, static_cast<std::size_t>(std::cin.gcount()));
    if (data.size() > kMaxInput)
      throw PlatformError(ErrorCode::invalid_request, "--stdin takes at most 512 KiB",
                          "Put larger input in a file of the image, or let the command fetch it.");
  }
  return data;
}

void run_exec(const Globals& g, const ExecArgs& a) {
  auto s = open_session(g);
  const bool session = a.interactive || a.tty;
  if (session && a.input)
    throw PlatformError(ErrorCode::invalid_request, "--stdin and -i/-t do not go together",
                        "-i streams stdin to the command as it runs; --stdin sends it whole to a single command.");
  if (session && a.timeout != "30s")
    throw PlatformError(ErrorCode::invalid_request, "--timeout does not apply to a session, which ends when its command exits",
                        "Drop --timeout, or drop -i/-t to run one command with a timeout.");
  const auto timeout = parse_duration(a.timeout);
  if (!timeout || *timeout < std::chrono::seconds(1) || *timeout > std::chrono::minutes(10))
    throw PlatformError(ErrorCode::invalid_request, "--timeout \"" + a.timeout + "\" is not a duration from 1s to 10m",
                        "e.g. --timeout 2m");
  Json body = {{"command", a.command}, {"timeout", a.timeout}};
  Json env = Json::object();
  for (const auto& kv : a.env) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      throw PlatformError(ErrorCode::invalid_request, "--var \"" + kv.substr(0, 60) + "\" is not NAME=VALUE",
                          "e.g. --var LOG_LEVEL=debug");
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (session) {
    // A terminal program needs to know what it draws on, as ssh and docker pass it.
    if (const char* term = std::getenv("TERM"); a.tty && term && *term && !env.contains("TERM")) env["TERM"] = term;
    if (!env.empty()) body["env"] = env;
    body.erase("timeout");
    run_exec_session(g, s, a.instance, body, a.tty);
  }
  if (!env.empty()) body["env"] = env;
  if (a.input) {
    // Not interactive: the whole input goes with the request, so say so to someone at a terminal.
    if (::isatty(0)) note(g, "exec: reading stdin to its end (Ctrl-D), then running the command with it");
    body["stdin"] = base64_encode(read_input());
  }
  auto out = s.client().call("POST", s.env_path() + "/instances/" + api::url_encode(a.instance) + "/exec", body,
                             std::map<std::string, std::string>{}, *timeout + std::chrono::seconds(30));
  if (g.format() != Format::table) {
    print_json(out);
  } else {
    if (a.instance != out.value("instance", "") && a.instance != out.value("instance_id", ""))
      note(g, "exec: in " + out.value("instance", "") + ", a running " + a.instance + " instance");
    const auto bytes = base64_decode(out.value("output", "")).value_or("");
    std::cout << bytes << std::flush;
    if (out.value("truncated", false)) note(g, "exec: output cut at " + std::to_string(bytes.size()) + " bytes");
  }
  // With -o json the result above is the one document (it says timed_out, or has no exit_code); the
  // exit status still tells the cases apart.
  const bool json = g.format() != Format::table;
  if (out.value("timed_out", false)) {
    if (json) throw ExitWith{exit_code(ErrorCode::timed_out)};
    throw PlatformError(ErrorCode::timed_out,
                        "the command ran past its " + a.timeout + " timeout in " + out.value("instance", "") +
                            " and was killed",
                        "Give it longer with --timeout (up to 10m).");
  }
  // The command's own exit status, as ssh and kubectl exec pass it on.
  if (!out["exit_code"].is_number_integer()) {
    if (json) throw ExitWith{exit_code(ErrorCode::failed)};
    throw PlatformError(ErrorCode::failed, "the command in " + out.value("instance", "") + " ended without an exit status",
                        "It was killed; `platform instance describe " + out.value("instance", "") +
                            "` shows whether the instance was too.");
  }
  if (out["exit_code"].get<int>() != 0) throw ExitWith{out["exit_code"].get<int>()};
}

}  // namespace

void add_exec_command(CLI::App& app, Globals& g) {
  auto a = std::make_shared<ExecArgs>();
  auto* cmd = app.add_subcommand("exec", "Run a command inside a running instance: its output, and its exit status");
  cmd->add_option("instance", a->instance, "Instance name (web-3) or ID, or a process (web): one of its running instances")
      ->required();
  cmd->add_option("command", a->command, "The program and its arguments, after --")->required();
  cmd->add_option("-e,--var", a->env, "NAME=VALUE added to the command's environment (repeatable; --env names the env)")
      ->allow_extra_args(false);  // one value each: the words after it are the command's
  cmd->add_option("--timeout", a->timeout, "Kill the command after this long (1s to 10m)")->capture_default_str();
  cmd->add_flag("--stdin", a->input, "Send what this command reads on stdin (to its end, at most 512 KiB) as the command's stdin");
  cmd->add_flag("-i,--interactive", a->interactive,
                "A session: stdin streams to the command and its output streams back while it runs");
  cmd->add_flag("-t,--tty", a->tty, "A session on a terminal (needs one here): a shell, top, an editor; -it as with docker");
  cmd->footer(
      "Examples:\n"
      "  platform exec web-3 --project shop --app api --env prod -- /bin/sh -c 'ls -l /app; cat /etc/resolv.conf'\n"
      "  platform exec web --var ECHO_SHOW=1 -- /app/echo     # in a running instance of process web\n"
      "  platform exec web-3 --stdin -- /bin/sh < fix.sh     # a script, read from a local file\n"
      "  platform exec -it web -- /bin/sh                    # an interactive shell on a terminal\n"
      "  tail -f local.log | platform exec -i web -- /bin/grep --line-buffered ERROR   # a stream in, a stream out\n"
      "stdout and stderr arrive together (each in its order), up to 1 MiB. The exit status is the command's\n"
      "own (ssh and kubectl exec do the same); exit 4 when it ran out of --timeout. Without -i/-t, stdin\n"
      "only with --stdin, read whole before the command starts. With -i/-t the command runs until it exits\n"
      "(a session whose CLI has gone for a minute is ended); on a terminal, keys (Ctrl-C too) go to it.\n"
      "Every exec and session is in the audit trail (InstanceExecRequested/Finished, InstanceSessionOpened/Ended)\n"
      "with its whole command line, never rewritten: pass secrets with --var (only names are recorded).");
  cmd->callback([&g, a] { run_exec(g, *a); });
}

}  // namespace platform::cli
