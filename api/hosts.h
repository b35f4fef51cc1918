#pragma once
// Hosts (docs/hosts.md): join tokens, enrolment, heartbeats and liveness. The command side of the
// hosts API and of the liveness reconciler; every state change appends an event to host-<id>.
#include <pqxx/pqxx>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "engine/json.h"

namespace platform::api {

struct JoinToken {
  std::string id;
  std::string secret;  // "pjt_<hex>", shown once
  std::string expires_at;
};

// Issues a single-use join token valid for `ttl`, appending HostJoinTokenIssued (without the secret).
JoinToken issue_join_token(pqxx::work& tx, const std::string& user_id, std::chrono::seconds ttl,
                           const std::string& request_id, const std::string& operation_id);

struct Enrolled {
  std::string host_id, name;
  std::string credential;  // "phc_<hex>", shown once: the agent keeps it
  std::int64_t position = 0;
};

// Spends a join token (unknown, used or expired: unauthenticated) and registers the host with its first
// report ({capacity:{cpus, memory_mib, disk_mib}, runtime:{name, reason, ...}}), appending HostEnrolled.
Enrolled enrol_host(pqxx::work& tx, const std::string& join_secret, const std::string& name, const Json& report);

// The host a credential belongs to; throws unauthenticated.
struct HostIdentity {
  std::string id, name;
};
HostIdentity authenticate_host(pqxx::transaction_base& tx, const std::string& credential);

// Records a heartbeat; a host that was down comes back up (HostUp). Returns the state before.
std::string heartbeat(pqxx::work& tx, const std::string& host_id, const Json& report);

// Marks every host that is up but silent for longer than `grace` down (HostDown, with why), and
// returns their ids. Run by the liveness reconciler.
std::vector<std::string> mark_silent_hosts_down(pqxx::work& tx, std::chrono::milliseconds grace);

// Every host with its liveness and newest report, or one (nullopt when unknown).
Json list_hosts(pqxx::transaction_base& tx);
std::optional<Json> describe_host(pqxx::transaction_base& tx, const std::string& id_or_name);

// Marks the user a platform operator (appending UserMadeOperator once).
void make_operator(pqxx::work& tx, const std::string& user_id);
bool is_operator(pqxx::transaction_base& tx, const std::string& user_id);

// A report as the API accepts it: throws invalid_request naming the field.
void check_host_report(const Json& report);

}  // namespace platform::api
