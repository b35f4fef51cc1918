#include "agent/exec_requests.h"

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>

#include "agent/supervisor.h"
#include "engine/crypto.h"
#include "engine/error.h"

namespace platform::agent {

std::optional<std::string> running_run(Runtime& runtime, const std::string& instance_id) {
  std::optional<std::pair<std::string, int>> newest;
  for (const auto& run : runtime.present()) {
    auto parsed = parse_run_id(run);
    if (!parsed || parsed->first != instance_id) continue;
    if (!newest || parsed->second > newest->second) newest = std::make_pair(run, parsed->second);
  }
  if (!newest || runtime.wait(newest->first, std::chrono::milliseconds(0))) return std::nullopt;  // ended
  return newest->first;
}

Json run_exec_request(Runtime& runtime, const Json& request) {
  const auto instance = request.value("instance_id", "");
  const auto run = running_run(runtime, instance);
  if (!run) return {{"error", "instance " + instance + " is not running on this host"}};
  const Json command = request.value("command", Json::array()), vars = request.value("env", Json::object());
  std::vector<std::string> argv;
  for (const auto& a : command) argv.push_back(a.get<std::string>());
  std::map<std::string, std::string> env;
  for (const auto& [k, v] : vars.items()) env[k] = v.get<std::string>();
  const auto input = base64_decode(request.value("stdin", ""));
  if (!input) return {{"error", "its stdin is not base64"}};
  const auto res = runtime.exec(*run, argv, env, std::chrono::milliseconds(request.value("timeout_ms", 30'000)),
                                request.value("max_output", std::size_t{1} << 20), *input);
  // No exit status and no timeout: it never ran (the runtime could not start it, or lost its line).
  if (res.exit_code < 0 && !res.timed_out) return {{"error", res.output.empty() ? "it could not be started" : res.output}};
  Json out = {{"timed_out", res.timed_out}, {"output", base64_encode(res.output)}, {"truncated", res.truncated}};
  if (res.exit_code >= 0) out["exit_code"] = res.exit_code;
  return out;
}

void serve_exec(std::shared_ptr<const api::Client> client, std::shared_ptr<Runtime> runtime,
                std::function<bool()> stopping) {
  auto running = std::make_shared<std::atomic<int>>(0);
  auto post = [client](const std::string& id, const Json& result) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      try {
        client->call("POST", "/v1/agent/exec/" + api::url_encode(id), result, std::string(), std::chrono::seconds(10));
        return;
      } catch (const PlatformError& e) {
        if (e.error().code == ErrorCode::not_found || e.error().code == ErrorCode::invalid_request) return;  // nobody waits
      } catch (const std::exception&) {
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  };
  bool reported_failure = false;
  while (!stopping()) {
    Json page;
    try {
      page = client->call("GET", "/v1/agent/exec?wait=20s", std::nullopt, std::string(), std::chrono::seconds(35));
      reported_failure = false;
    } catch (const std::exception& e) {
      if (!reported_failure) std::cerr << "platform-agent: exec watch failed: " << e.what() << " (retrying)\n";
      reported_failure = true;
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    const Json sessions = page.value("sessions", Json::array());
    for (const auto& session : sessions) {
      std::thread([client, runtime, session, stopping] { run_session(*client, runtime.get(), session, stopping); })
          .detach();
    }
    const Json requests = page.value("requests", Json::array());
    for (const auto& r : requests) {
      const auto id = r.value("exec_id", "");
      if (!runtime) {
        post(id, {{"error", "this host runs no instances"}});
        continue;
      }
      if (*running >= kMaxExecRunning) {
        post(id, {{"error", "this host already runs " + std::to_string(kMaxExecRunning) + " exec commands; retry"}});
        continue;
      }
      ++*running;
      std::thread([runtime, r, id, running, post] {
        Json result;
        try {
          result = run_exec_request(*runtime, r);
        } catch (const std::exception& e) {
          result = {{"error", e.what()}};
        }
        post(id, result);
        --*running;
      }).detach();
    }
  }
}

}  // namespace platform::agent
