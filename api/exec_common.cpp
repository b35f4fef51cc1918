#include "api/exec_common.h"

#include <cctype>

#include "api/path.h"
#include "engine/error.h"

namespace platform::api {

namespace {
[[noreturn]] void bad(const std::string& what, const std::string& hint) {
  throw PlatformError(ErrorCode::invalid_request, what, hint);
}
}  // namespace

void check_exec_command(const Json& command, const std::string& eg) {
  if (command.empty() || command.size() > 64) bad("command must name a program and at most 63 arguments", eg);
  for (const auto& a : command) {
    const auto& s = a.get_ref<const std::string&>();
    if (s.size() > 4096) bad("each argument of command must be at most 4096 bytes", eg);
    if (s.find('\0') != std::string::npos || s.find('\n') != std::string::npos)
      bad("an argument of command holds a NUL or a newline, which exec cannot pass",
          "Join the lines with ';' in a `sh -c` argument, or put the script in the image.");
  }
  if (command[0].get<std::string>().empty()) bad("command[0] must name the program to run", eg);
}

void check_exec_env(const Json& env, const std::string& eg) {
  if (env.size() > 32) bad("env may set at most 32 variables", eg);
  for (const auto& [k, v] : env.items()) {
    const bool name_ok = !k.empty() && k.size() <= 128 && !std::isdigit(static_cast<unsigned char>(k[0])) &&
                         k.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") ==
                             std::string::npos;
    if (!name_ok) bad("env name \"" + k.substr(0, 60) + "\" is not a variable name", "Use letters, digits and '_'.");
    const auto& s = v.get_ref<const std::string&>();
    if (s.size() > 4096 || s.find('\0') != std::string::npos || s.find('\n') != std::string::npos)
      bad("env " + k + " must be at most 4096 bytes, without a NUL or a newline", eg);
  }
}

ExecTarget running_exec_target(pqxx::transaction_base& tx, const std::vector<Resolved>& chain, const std::string& ref) {
  const auto& env = chain.back();
  auto row = tx.exec_params(
      "SELECT i.id, i.name, i.state, i.org_id, h.id, h.name"
      " FROM core.instances i JOIN core.hosts h ON h.id = i.host_id"
      // An instance by ID or name, or by process name the first of its running instances.
      " WHERE i.env_id = $1 AND (i.id = $2 OR i.name = $2 OR (i.process = $2 AND i.state = 'running'))"
      " ORDER BY (i.id = $2 OR i.name = $2) DESC, i.ordinal LIMIT 1 FOR SHARE OF i",
      env.id, ref);
  if (row.empty())
    throw PlatformError(ErrorCode::not_found,
                        "env " + env.name + " has no instance \"" + ref.substr(0, 80) +
                            "\", nor a process of that name with a running instance",
                        "List them with `platform instance list " + env_flags(chain) + "`.");
  ExecTarget t{row[0][0].as<std::string>(), row[0][1].as<std::string>(), row[0][3].as<std::string>(),
               row[0][4].as<std::string>(), row[0][5].as<std::string>()};
  const auto state = row[0][2].as<std::string>();
  if (state != "running")
    throw PlatformError(ErrorCode::precondition_failed,
                        "instance " + t.instance_name + " is " + state + ": exec runs a command in a running instance",
                        "Pick a running one from `platform instance list " + env_flags(chain) + "`.");
  return t;
}

std::string shell_line(const Json& command) {
  std::string line;
  for (const auto& arg : command) {
    const auto& w = arg.get_ref<const std::string&>();
    const bool plain = !w.empty() && w.find_first_of(" \t'\"\\$`;&|<>*?()") == std::string::npos;
    line += (line.empty() ? "" : " ") + (plain ? w : Json(w).dump());
  }
  return line;
}

}  // namespace platform::api
