#pragma once
// One assigned instance on this host, from pull to stop (docs/agent.md): a thread that pulls the image
// (cached by digest), writes the secrets file, starts the instance in the host's runtime, probes its
// health, restarts it by its restart policy with backoff, and stops it when told, reporting every
// transition to the outbox with its reason. Each run is a runtime instance of its own, "<id>-r<n>", so
// a restart never reuses a container; after an agent restart the newest run is adopted, running or not.
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "agent/health.h"
#include "agent/image_store.h"
#include "agent/log_tail.h"
#include "agent/outbox.h"
#include "agent/runtime.h"
#include "engine/json.h"
#include "engine/manifest/manifest.h"
#include "engine/oci/image_ref.h"

namespace platform::agent {

// One entry of the host's assignment set (GET /v1/agent/assignments).
struct Assignment {
  std::string id, name;
  oci::ImageRef image;  // by digest
  manifest::Process process;
  double cpu = 0;
  std::int64_t memory_mib = 0;
  std::map<std::string, std::string> env;
  bool secrets = false;
  bool run = true;  // false: stop it
  std::string desired_reason;
  int restarts = 0;  // as the control plane knows them (an adopted instance continues the count)
  std::string state;  // as the control plane knows it
  std::string address;  // its private address from the control plane's IPAM ("": none, loopback only)
  // Throws Json::exception or PlatformError when the entry is malformed.
  static Assignment from_json(const Json& j);
};

struct SupervisorDeps {
  ImageStore* images = nullptr;
  Runtime* runtime = nullptr;
  Outbox* outbox = nullptr;
  std::function<std::string(const std::string& instance_id)> fetch_secrets;  // the secrets file's bytes
  std::function<void(const Json& lines)> ship_logs;  // POST /v1/agent/logs; throws when it did not arrive
  std::string secrets_dir;  // one 0600 file per instance, mounted read-only
  std::chrono::milliseconds stop_grace{10000};  // unless the process's manifest says stop_timeout
  // Before an instance asked to stop gets SIGTERM: whether the edge on this host no longer sends it new
  // connections (GET /v1/agent/instances/{id}/drain): {drained, why}. Asked every 50 ms until drained,
  // for at most drain_timeout; unset or failing, the instance is stopped at once.
  std::function<Json(const std::string& instance_id)> drain;
  std::chrono::milliseconds drain_timeout{5000};
};

// "<instance id>-r<n>" -> (instance id, n); nullopt for other names.
std::optional<std::pair<std::string, int>> parse_run_id(const std::string& run_id);
std::string run_id(const std::string& instance_id, int attempt);

class InstanceSupervisor {
 public:
  // `adopt`: the run of this instance already on the host (after an agent restart), if any.
  InstanceSupervisor(Assignment a, SupervisorDeps deps, std::optional<std::string> adopt);
  ~InstanceSupervisor();  // stops nothing: the instance keeps running if the agent exits
  InstanceSupervisor(const InstanceSupervisor&) = delete;
  InstanceSupervisor& operator=(const InstanceSupervisor&) = delete;

  // SIGTERM, grace, SIGKILL; reported as InstanceStopped. `drain`: the control plane asked for the stop
  // (the instance may be a backend of the edge): first wait until the edge no longer sends it connections.
  // `max_grace` caps the stop_timeout (the agent's own shutdown must end before whoever stops it gives up).
  void request_stop(const std::string& reason, bool drain = false,
                    std::chrono::milliseconds max_grace = std::chrono::milliseconds::max());
  void detach();                                 // the agent is exiting: leave the instance as it is
  bool finished() const { return finished_; }
  const std::string& image_digest() const { return a_.image.digest; }

 private:
  void run();
  void supervise();  // the run loop; run() restarts it after an unexpected error
  void finish();     // the stop: SIGTERM, grace, SIGKILL, reported
  bool start_run();  // false: could not start (reported)
  // `unhealthy`: the failing check's last error when the agent stopped it for that, else "".
  void after_exit(const ExitStatus& how, const std::string& unhealthy);
  bool sleep_unless_stopping(std::chrono::milliseconds d);
  void report(const std::string& type, Json data);
  // Ships the current run's new log lines (every second while it runs; all of them, with retries, before
  // its folder goes).
  void ship_logs(bool final);
  void track_logs();  // a LogTail for the current run
  ProbeResult exec_probe(const manifest::HealthCheck& check);  // an exec check, through the runtime

  Assignment a_;
  // SIGTERM to SIGKILL: the process's stop_timeout from the manifest, else deps_.stop_grace; at most
  // grace_cap_.
  std::chrono::milliseconds stop_grace() const;
  std::chrono::milliseconds grace_cap_ = std::chrono::milliseconds::max();  // under mu_
  SupervisorDeps deps_;
  std::optional<std::string> run_;  // the current run's id in the runtime
  std::optional<LogTail> tail_;
  std::chrono::steady_clock::time_point next_ship_{};
  bool ship_failed_ = false;  // said once until it works again
  int attempt_ = 0;
  std::chrono::steady_clock::time_point started_;
  mutable std::mutex mu_;
  std::string stop_reason_;
  bool drain_ = false;
  std::string drain_first();  // waits for deps_.drain; says how it went ("" when there was nothing to ask)
  std::atomic<bool> stopping_{false}, detached_{false}, finished_{false};
  bool given_up_ = false;  // failed, or done for good: waits to be stopped
  std::thread thread_;
};

}  // namespace platform::agent
