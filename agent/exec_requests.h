#pragma once
// `platform exec` on this host (docs/instances.md#exec): long-polls GET /v1/agent/exec for the commands
// asked of its instances, runs each in the instance's current run (a thread each, at most kMaxRunning at
// once) and posts each result to POST /v1/agent/exec/{id}.
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "agent/runtime.h"
#include "api/client.h"
#include "engine/json.h"

namespace platform::agent {

constexpr int kMaxExecRunning = 8;

// The run of `instance_id` that runs now: its newest "<id>-r<n>" still running; nullopt when none does.
std::optional<std::string> running_run(Runtime& runtime, const std::string& instance_id);

// Runs one request ({exec_id, instance_id, command, env, timeout_ms, max_output, stdin}) and answers the body
// to post: {exit_code, timed_out, output (base64), truncated}, or {error} when it could not run it.
Json run_exec_request(Runtime& runtime, const Json& request);

// Runs one interactive session ({session_id, instance_id, command, env, tty, rows, cols}): starts it in
// the instance's current run, relays its input (GET /v1/agent/sessions/{id}/input) and output (POST
// …/output) until it ends, and posts how it ended. Returns then; never throws.
void run_session(const api::Client& client, Runtime* runtime, const Json& session, const std::function<bool()>& stopping);

// Serves until `stopping()` answers true; never throws.
void serve_exec(std::shared_ptr<const api::Client> client, std::shared_ptr<Runtime> runtime,
                std::function<bool()> stopping);

}  // namespace platform::agent
