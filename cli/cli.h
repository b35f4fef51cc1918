#pragma once
// Shared pieces of the `platform` CLI: global flags, the active context, output in table/json/ndjson.
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "api/client.h"
#include "cli/context.h"
#include "engine/error.h"
#include "engine/error_details.h"
#include "engine/json.h"
#include "engine/manifest/manifest.h"

namespace CLI {
class App;
}

namespace platform::cli {

enum class Format { table, json, ndjson };

struct Globals {
  std::string context, org, project, app, env;
  std::string output = "table";
  bool quiet = false;
  bool no_color = false;
  Format format() const;
};

// The effective settings: flags over environment (PLATFORM_URL, PLATFORM_TOKEN) over the context.
struct Session {
  std::string context_name;
  ContextEntry ctx;
  // The API client; every call answers a copy sharing the first one's kept-alive connections.
  api::Client client() const;
  // Throws a usage error (exit 2) naming the flag to pass when the value is missing.
  std::string need_org() const;
  std::string need_project() const;
  std::string need_app() const;
  std::string need_env() const;
  // "/v1/orgs/<org>/projects/<project>/apps/<app>/envs/<env>", each part from flags or the context.
  std::string env_path() const;
  // " --project P --app A --env E": what makes a suggested command exact whatever the context holds.
  std::string env_flags() const;

 private:
  mutable std::optional<api::Client> client_;
};

Session open_session(const Globals& g);

// Where the URL and token the CLI uses come from: "context dev", "context dev, token from PLATFORM_TOKEN",
// "PLATFORM_URL and PLATFORM_TOKEN".
std::string settings_source(const Session& s);

// What `platform version` and `platform doctor` warn about in the server's GET /v1/version answer: a
// CLI of another release line, a server older than its database's schema, a schema not yet migrated.
std::vector<std::string> version_warnings(const Json& server);

// Output helpers. Tables go to stdout; progress and notes to stderr (silenced by --quiet).
void print_json(const Json& j);
void print_table(const std::vector<std::string>& headers, const std::vector<std::vector<std::string>>& rows);
// The column widths print_table uses for these rows, and one line at those widths (a streamed row
// under a printed table: each width grows to fit the row, so later lines stay aligned with it).
std::vector<std::size_t> table_widths(const std::vector<std::string>& headers,
                                      const std::vector<std::vector<std::string>>& rows);
std::string table_line(std::vector<std::size_t>& widths, const std::vector<std::string>& cells);
void note(const Globals& g, const std::string& line);
// For the reads of follows and waits (`events -f`, `logs -f`, `wait`): runs `call`, and while the API
// cannot be reached or answers that it is unavailable (platformd restarting, an upgrade), tries again
// every second, saying so on stderr once as `who: …; retrying` and once more when it answers. Until
// `deadline`, when one is given: then the last error stands (exit 1). Other errors pass through; Ctrl-C
// ends it as interrupted.
Json call_through_outage(const Globals& g, const std::string& who, const std::function<Json()>& call,
                         std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);
// A span of seconds, short: "45s", "3m", "2h", "4d".
std::string short_duration(std::int64_t seconds);
// A resource path "org/O/project/P/app/A/env/E" as kind -> name.
std::map<std::string, std::string> path_names(const std::string& path);
// An address and port as clients write them: "[2001:db8::1]:443", "192.0.2.1:443".
std::string address_port(const std::string& ip, int port);
// A version number as the CLI writes it: "v12"; "-" when there is none (null).
std::string version_name(const Json& v);
// The config an edge of `platform exposure` should serve ("v38"): the next version when the state changed
// since it last asked for its config.
std::string edge_wanted(const Json& edge);
// "; but 2 instances refuse the edge's connections …" when a status's `unreachable` names some
// (docs/network.md#backends-that-refuse-the-edge): served, yet those connections fail. "" otherwise.
std::string refused_edge(const Json& status);
// Asks on a terminal (stderr, stdin); true only for "y" or "yes".
bool ask(const std::string& question);
// For what cannot be undone: true only when the answer is `expected` typed out (an env's name).
bool ask_typed(const std::string& question, const std::string& expected);
// A mutation's receipt: one JSON document, or a short human summary with the next commands.
void print_receipt(const Globals& g, const Json& receipt);

using ::platform::DetailedError;  // engine/error_details.h

// Ends the command with this exit code and no error (`platform diff` exits 3 when there are differences).
struct ExitWith {
  int code;
};

// Reads and validates a platform.toml; a DetailedError lists every problem (exit 2, or 10 when each one
// is a v1-deferred feature).
manifest::Manifest load_manifest(const std::string& path);
std::string read_manifest_file(const std::string& path);

// Registration of each command group.
// The describe commands, each as `platform NOUN describe` prints it (table, or the API's JSON); the
// env-scoped ones take the env from the session. `platform describe TARGET` dispatches to them.
void describe_resource(const Globals& g, const Session& s, const std::string& kind, const std::string& ref);
void describe_operation(const Globals& g, const Session& s, const std::string& id);
void describe_host(const Globals& g, const Session& s, const std::string& which);
void describe_release(const Globals& g, const Session& s, const std::string& which);
void describe_instance(const Globals& g, const Session& s, const std::string& which);
void describe_endpoint(const Globals& g, const Session& s, const std::string& which);

// `platform NOUN events NAME [-f] [--since] [--type]`: platform events --resource KIND/NAME (or the ID).
void add_events_verb(CLI::App* noun, Globals& g, const std::string& kind, const std::string& example);

void add_context_commands(CLI::App& app, Globals& g);
void add_resource_commands(CLI::App& app, Globals& g);
void add_event_commands(CLI::App& app, Globals& g);
void add_help_commands(CLI::App& app, Globals& g);
void add_manifest_commands(CLI::App& app, Globals& g);
void add_config_commands(CLI::App& app, Globals& g);
void add_secrets_commands(CLI::App& app, Globals& g);
void add_deploy_commands(CLI::App& app, Globals& g);
void add_host_commands(CLI::App& app, Globals& g);
void add_instance_commands(CLI::App& app, Globals& g);
void add_network_commands(CLI::App& app, Globals& g);
void add_describe_command(CLI::App& app, Globals& g);
void add_exec_command(CLI::App& app, Globals& g);
void add_token_commands(CLI::App& app, Globals& g);
void add_version_command(CLI::App& app, Globals& g);
void add_doctor_command(CLI::App& app, Globals& g);

// The IPv4 add-on's price, accepted: states it (stderr) and asks on a terminal, or takes `yes`; otherwise
// a precondition error (exit 6) naming the price and --yes. nullopt when the env already holds one.
std::optional<std::int64_t> accept_ipv4_price(Session& s, const Globals& g, bool yes, const std::string& why);

// POSTs a rollback or a planned deploy. The CLI cannot tell beforehand whether the release it lands on
// asks for the IPv4 add-on; when the server refuses for want of an accepted price, the price is accepted
// as accept_ipv4_price does (--yes or the question) and the request sent once more.
Json post_accepting_ipv4(Session& s, const Globals& g, bool yes, const std::string& path, Json body,
                         const std::map<std::string, std::string>& headers, std::chrono::milliseconds timeout);

// `platform wait` without a target: the env's rollout (converged 0, failed 1, unplaceable 5, timeout 4).
void run_wait_converged(const Globals& g, const std::string& timeout);
// An env to wait on: its API path ("/v1/orgs/…/envs/prod"), its flags for hints (" --project … --env
// prod") and its name.
struct EnvTarget {
  std::string api_path, flags, name;
};
// Until the env's rollout converges (its final status), saying on stderr what moves; throws as
// run_wait_converged exits (failed, unplaceable, no release, timed out at `deadline`).
Json wait_env_converged(const Globals& g, api::Client& client, const EnvTarget& env,
                        std::chrono::steady_clock::time_point deadline, const std::string& timeout_text);

// After a change: until every running edge serves the env's present state (its edges_pending is empty),
// saying on stderr which edge it waits for; then the endpoints for which `must_listen(name)` is true (and
// the routes, when `must_listen("")` is) must listen on every edge (precondition failed, exit 6, naming
// the address, host and error when not), and the env's other traffic problems go to stderr. Times out (exit 4) at `deadline`. Returns the env's
// status with its traffic.
Json wait_traffic_served(const Globals& g, api::Client& client, const EnvTarget& env,
                         std::chrono::steady_clock::time_point deadline, const std::string& timeout_text,
                         const std::function<bool(const std::string& endpoint)>& must_listen);

// `--wait [--timeout 5m]` on a change that starts a rollout (deploy, rollback, scale), or that only
// changes what the edges serve (endpoint create|delete, ip allocate-v4|release).
struct RolloutWait {
  bool wait = false;
  std::string timeout = "5m";
};
void add_rollout_wait(CLI::App* cmd, RolloutWait& w);
// The change's receipt; with --wait, then its rollout followed to the end as `platform wait` does (the
// same exit codes; `-o json` prints one document, the receipt with the converged status as `rollout`).
void print_receipt_and_wait(const Globals& g, Session& s, const Json& receipt, const RolloutWait& w);
// The change's receipt; with --wait, then wait_traffic_served() (`-o json`: the receipt with the env's
// status as `served`).
void add_served_wait(CLI::App* cmd, RolloutWait& w);
void print_receipt_and_wait_served(const Globals& g, Session& s, const Json& receipt, const RolloutWait& w,
                                   const std::function<bool(const std::string& endpoint)>& must_listen);

// Set by the SIGINT handler; long-running commands check it and exit 130.
bool interrupted();

}  // namespace platform::cli
