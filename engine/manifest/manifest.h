#pragma once
// `platform.toml` v1: the model, the strict parser and the normalised form. See docs/manifest.md and
// engine/manifest/platform.schema.json. toml++ stays inside parse.cpp; this header is light.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/json.h"

namespace platform::manifest {

struct HealthCheck {
  std::string type;                  // "tcp" | "http" | "exec"
  int port = 0;                      // tcp, http
  std::string path = "/";            // http
  std::vector<std::string> command;  // exec
  std::int64_t interval_ms = 10'000, timeout_ms = 2'000, grace_ms = 30'000;
  int threshold = 3;  // consecutive failures before the instance is unhealthy
};

struct RestartPolicy {
  std::string policy = "always";  // "always" | "on-failure" | "never"
  int max_attempts = 10;          // then the instance is failed; 0 = no limit
  std::int64_t backoff_ms = 1'000, max_backoff_ms = 300'000;  // doubles from backoff up to max_backoff
};

struct Process {
  std::string name;
  std::vector<std::string> command;  // empty: the image's entrypoint and cmd
  double cpu = 0.25;                 // vCPUs
  std::int64_t memory_mib = 256;     // a hard limit
  int count = 1;
  std::optional<HealthCheck> health;
  RestartPolicy restart;
  // From SIGTERM to SIGKILL when the instance is stopped (after the edge has drained it); unset: the
  // agent's default, 10 s.
  std::optional<std::int64_t> stop_timeout_ms;
};

struct Endpoint {  // a dedicated TCP port on the app env's own address
  std::string name;
  std::string protocol = "tcp";
  int port = 0;           // external
  int internal_port = 0;  // the process listens here
  std::string process;
  bool ipv4 = false;           // the paid IPv4 add-on; IPv6 always
  std::string proxy_protocol;  // "" or "v2"
};

struct Route {  // SNI hostnames on the shared 443 listener; TLS passes through to the process
  std::vector<std::string> hostnames;
  std::string process;
  int internal_port = 0;
  std::string proxy_protocol;
};

struct Volume {
  std::string name;
  std::int64_t size_mib = 0;
  std::string mount;
  std::string process;
};

struct KeySurface {  // env var names the app reads: a deploy needs every required one set
  std::vector<std::string> required, optional;
};

struct ProcessOverride {
  std::optional<double> cpu;
  std::optional<std::int64_t> memory_mib;
  std::optional<int> count;
};

struct Manifest {
  int schema_version = 1;
  std::string app;
  std::vector<Process> processes;  // in the file's order
  std::vector<Endpoint> endpoints;
  std::vector<Route> routes;
  std::vector<Volume> volumes;
  KeySurface config, secrets;
  std::map<std::string, std::map<std::string, ProcessOverride>> envs;  // env -> process -> override

  const Process* process(std::string_view name) const;
};

struct Diagnostic {
  std::string file;
  int line = 0, column = 0;  // 1-based; 0 when the problem has no single place
  std::string key;           // dotted path, e.g. processes.web.comand
  std::string message;
  std::string hint;
  bool not_supported = false;  // a v1-deferred feature (exit 10) rather than an error (exit 2)
  std::string format() const;  // "file:line:col: message"
  Json to_json() const;
};

struct ParseResult {
  std::optional<Manifest> manifest;  // set only when there are no diagnostics
  std::vector<Diagnostic> diagnostics;
  // 0 when valid; 10 when every problem is a v1-deferred feature; 2 otherwise.
  int exit_code() const;
};

// Parses and validates strictly; every problem found is reported, not just the first.
ParseResult parse(std::string_view text, std::string_view file = "platform.toml");

// Throws DetailedError (engine/error_details.h) listing every diagnostic with its place and hint: exit 10
// when each one is a v1-deferred feature, exit 2 otherwise. Returns when the manifest is valid.
void throw_if_invalid(const ParseResult& result, const std::string& file);

// The manifest as deployed to `env`: its [env.NAME] overrides applied (none when it has no section).
Manifest for_env(const Manifest& m, const std::string& env);

// Normalised: every default filled in, sizes in MiB, durations as strings ("10s"), stable key order.
// The same content always gives the same JSON (the release's manifest hash is taken over it).
Json to_json(const Manifest& m);

// One process back from the normalised JSON (`processes.NAME` of to_json), as the scheduler and the
// agent read a release. Throws Json::exception when the JSON is not of that form.
Process process_from_json(const std::string& name, const Json& j);

// The same as TOML, for `platform manifest explain`.
std::string to_toml(const Manifest& m);

// The JSON Schema of the manifest (engine/manifest/platform.schema.json, embedded at build time).
std::string_view json_schema();

// "512MiB", "1GiB", "1.5GiB" or a bare integer of MiB; nullopt when malformed.
std::optional<std::int64_t> parse_size_mib(std::string_view s);
std::string format_size_mib(std::int64_t mib);

}  // namespace platform::manifest
