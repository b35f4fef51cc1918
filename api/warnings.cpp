#include "api/warnings.h"

#include "engine/version.h"

namespace platform::api {
namespace {

// "45 minutes", "30 hours", "6 days": the time left, in the unit that reads best.
std::string time_left(std::int64_t seconds) {
  const auto unit = [](std::int64_t n, const char* one) { return std::to_string(n) + " " + one + (n == 1 ? "" : "s"); };
  if (seconds < 2 * 3600) return unit(std::max<std::int64_t>(seconds / 60, 1), "minute");
  if (seconds < 2 * 86400) return unit(seconds / 3600, "hour");
  return unit(seconds / 86400, "day");
}

// "0.2.0" of "platform-cli/0.2.0 (3f1c2a9b7d0e)"; "" when the User-Agent is not our CLI's.
std::string cli_version_of(const std::string& user_agent) {
  const std::string prefix = "platform-cli/";
  if (user_agent.rfind(prefix, 0) != 0) return {};
  const auto end = user_agent.find(' ', prefix.size());
  return user_agent.substr(prefix.size(), end == std::string::npos ? std::string::npos : end - prefix.size());
}

}  // namespace

std::vector<std::string> request_warnings(const Principal& p, const Request& req,
                                          std::chrono::system_clock::time_point now) {
  std::vector<std::string> out;
  if (p.token_expires_unix > 0) {
    const auto left = p.token_expires_unix - std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    if (left > 0 && left <= std::chrono::duration_cast<std::chrono::seconds>(kTokenExpiryWarning).count())
      out.push_back("token " + p.token_id + " expires in " + time_left(left) + " (at " + p.token_expires_at +
                    "): make its successor with `platform token create` and switch to it before then");
  }
  const auto cli = cli_version_of(req.header("user-agent"));
  if (!cli.empty() && release_line(cli) != release_line(build_info().version))
    out.push_back("this CLI is " + cli + " and the server " + build_info().version +
                  ": use a CLI of the server's release (" + release_line(build_info().version) +
                  ".x); `platform version` says more");
  return out;
}

std::string warning_header(const std::string& text) {
  std::string quoted;
  for (char c : text) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += (c == '\r' || c == '\n') ? ' ' : c;
  }
  return "299 - \"" + quoted + "\"";
}

}  // namespace platform::api
