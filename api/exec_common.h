#pragma once
// What `platform exec` (api/handlers_exec.cpp) and its interactive sessions (api/handlers_sessions.cpp)
// share: the checks of a command and its variables, and the running instance it runs in.
#include <pqxx/pqxx>

#include <string>
#include <vector>

#include "api/resources.h"
#include "engine/json.h"

namespace platform::api {

// Checks body["command"] (argv) and body["env"] (NAME: value); throws invalid_request naming what is wrong.
void check_exec_command(const Json& command, const std::string& example);
void check_exec_env(const Json& env, const std::string& example);

struct ExecTarget {
  std::string instance_id, instance_name, org_id, host_id, host_name;
};

// The instance `ref` (ID or name, or a process name: the first of its running instances) of the env at
// the end of `chain`, locked FOR SHARE; throws not_found when there is none and precondition_failed when
// it is not running.
ExecTarget running_exec_target(pqxx::transaction_base& tx, const std::vector<Resolved>& chain, const std::string& ref);

// Marks the host's sessions nobody took yet as taken and answers them for the agent (GET /v1/agent/exec):
// [{session_id, instance_id, command, env, tty, rows, cols}].
Json take_sessions(pqxx::transaction_base& tx, const std::string& host_id);

// The command as a shell would show it, for an event's reason.
std::string shell_line(const Json& command);

}  // namespace platform::api
