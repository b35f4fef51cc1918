#pragma once
// Instance logs (docs/logs.md): lines the agents ship, and the reads behind `platform logs`. App lines
// come from core.log_lines; system lines are the events of the env's instances (placed, started,
// exited, restarting ...). Both are read by a (tx_id, position) cursor below the safe horizon, so a
// follower never skips a line that commits late.
#include <pqxx/pqxx>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "engine/json.h"

namespace platform::api {

// Stores a batch from a host's agent: [{instance_id, run, stream, offset, at, message}] (at most 2000).
// Lines of instances that are not this host's are dropped; a line already stored is not stored again.
// Throws invalid_request for a malformed batch. Returns {stored, ignored}.
Json store_log_lines(pqxx::work& tx, const std::string& host_id, const Json& lines);

struct LogQuery {
  std::string env_id;
  std::string cursor;            // from a previous answer's "next"; empty: from the start
  std::string process, instance; // instance: name or id
  std::string since, until;      // RFC 3339 (inclusive, exclusive); empty: unbounded
  std::string source = "all";    // app | system | all
  int limit = 500;
  int tail = 0;                  // > 0: only the newest `tail` lines (no cursor), and a cursor after them
};
// {"lines": [{at, source, process, instance, instance_id, stream, message}], "next": cursor}, by time.
Json read_logs(pqxx::transaction_base& tx, const LogQuery& q);

// What the instance wrote last: up to `limit` lines of its latest run (both streams), oldest first, as
// [{at, stream, message}]; empty when it has written nothing that is still kept.
Json last_output(pqxx::transaction_base& tx, const std::string& instance_id, int limit);

// The last line each of `instance_ids` wrote, in one query: id -> {at, stream, message} (absent: none).
std::map<std::string, Json> last_lines(pqxx::transaction_base& tx, const std::vector<std::string>& instance_ids);

// Removes lines older than `retention`; returns how many.
std::int64_t expire_logs(pqxx::work& tx, std::chrono::hours retention);

}  // namespace platform::api
