#pragma once
// Instances (docs/instances.md). The scheduler writes which instance runs where (core.instances, in the
// same transaction as InstancePlaced / InstanceStopRequested / InstanceLost); this is the other side:
// what an agent is assigned, what its reports change, and what users see (status, list, describe).
// Every event about an instance is in its own stream, instance-<id>, in order.
#include <pqxx/pqxx>

#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/json.h"
#include "engine/secrets/secrets.h"

namespace platform::api {

std::string instance_stream(const std::string& instance_id);

// What each process of a release should run in an env: the manifest's count and sizes, with what
// `platform scale` set over them (core.env_runtime.scale: process -> {count, memory_mib, cpu}).
struct ProcessSize {
  int count = 0;
  double cpu = 0;
  std::int64_t memory_mib = 0;
  bool scaled = false;  // some of it comes from `platform scale`
  // An instance of this size or another: the scheduler replaces one of another size, and status does
  // not count it as current until then.
  bool differs_from(std::int64_t instance_memory_mib, double instance_cpu) const {
    return memory_mib != instance_memory_mib || std::abs(cpu - instance_cpu) > 1e-9;
  }
};
std::map<std::string, ProcessSize> process_sizes(const Json& manifest, const Json& scale);

// An env's desired spec changed (a deploy, rollback or scale): sets its release and/or scale in
// core.env_runtime for the scheduler, and drops the scheduler's unschedulable verdicts, which were about
// the old spec (until its next pass the env is "progressing", never "unschedulable" for a size it no
// longer asks for). `release_id` or `scale` empty: unchanged.
void set_env_runtime(pqxx::work& tx, const std::string& env_id, const std::string& org_id,
                     const std::string& release_id, const std::optional<Json>& scale);

// SQL: whether instance `i` (an alias of core.instances) is to be replaced: `platform instance restart`
// asked for it, or it was placed before its process's last `platform restart` in env runtime `rt`
// (core.env_runtime). The scheduler replaces it like an instance of an old release.
std::string sql_restart_due(const std::string& i, const std::string& rt);

// `platform restart`: asks for every instance of `processes` in the env (all its processes when empty)
// that runs now to be replaced. Returns how many instances that asks to replace, per process.
std::map<std::string, int> request_restart(pqxx::work& tx, const std::string& env_id,
                                           const std::vector<std::string>& processes);

// --- for platform-agent (host credential) ---

// The largest assignment version among the host's instances (0 when it has none): it changes whenever
// the scheduler changes what the host should run.
std::int64_t assignment_version(pqxx::transaction_base& tx, const std::string& host_id);

// The host's whole assignment set, level-triggered: every instance on it not yet stopped, with what to
// run (image by digest, command, sizes, health check, restart policy, config as env) and whether it
// should run or stop. {"version": n, "instances": [...]}.
Json host_assignments(pqxx::transaction_base& tx, const std::string& host_id);

// A batch of the agent's reports: [{event_id, instance_id, seq, type, at, data}]. Each becomes an event
// in instance-<id> (its event_id makes a resend a no-op) and moves the instance's state, unless a report
// with a higher seq was applied first. Reports about instances of other hosts are rejected, each with
// why; the rest still apply. Throws invalid_request for a malformed batch.
struct ReportsOutcome {
  int applied = 0, duplicates = 0;
  Json rejected = Json::array();  // [{event_id, reason}]
};
ReportsOutcome apply_reports(pqxx::work& tx, const std::string& host_id, const std::string& host_name,
                             const Json& reports);

// The secrets file (engine/secrets encode_file) of an instance assigned to this host, opened with
// `keys`; not_found when the instance is not this host's.
std::string instance_secrets_file(pqxx::transaction_base& tx, const std::string& host_id,
                                  const std::string& instance_id, const std::vector<secrets::Key>& keys);

// --- for users (org-scoped; the caller has resolved the env) ---

// The env's current release, each process's desired and current counts, its instances and anything not
// converging with why, in words. `converged` is true when every process runs exactly its count of the
// current release, all healthy, and nothing else.
Json env_status(pqxx::transaction_base& tx, const std::string& env_id);

// The env's instances (newest first); stopped ones too when `all`.
Json list_instances(pqxx::transaction_base& tx, const std::string& env_id, bool all);

// One instance by id or name, with its events in order (why it was placed, started, restarted, stopped).
std::optional<Json> describe_instance(pqxx::transaction_base& tx, const std::string& env_id,
                                      const std::string& id_or_name);

}  // namespace platform::api
