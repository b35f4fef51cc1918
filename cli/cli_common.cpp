#include <fmt/format.h>

#include <csignal>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "cli/cli.h"
#include "engine/error.h"

namespace platform::cli {

Format Globals::format() const {
  if (output == "json") return Format::json;
  if (output == "ndjson") return Format::ndjson;
  return Format::table;
}

namespace {
// A warning the API sent (a token about to expire, a CLI of another release): printed once per run on
// stderr, however many answers carry it (a follow asks again and again, and the time left in "expires
// in 88 minutes" moves as it does: texts that differ only in their numbers are one warning).
// stdout is left alone.
void print_warning(const std::string& text) {
  static std::mutex mu;
  static std::set<std::string> said;
  std::string key = text;
  for (auto& c : key)
    if (c >= '0' && c <= '9') c = '#';
  std::lock_guard lock(mu);
  if (said.insert(key).second) std::cerr << "warning: " << text << "\n" << std::flush;
}
}  // namespace

Session open_session(const Globals& g) {
  auto cfg = load_config();
  Session s;
  s.context_name = !g.context.empty() ? g.context : (std::getenv("PLATFORM_CONTEXT") ? std::getenv("PLATFORM_CONTEXT") : cfg.current);
  if (!s.context_name.empty()) {
    auto it = cfg.contexts.find(s.context_name);
    if (it == cfg.contexts.end())
      throw PlatformError(ErrorCode::invalid_request, "no context named \"" + s.context_name + "\"",
                          "List contexts with `platform context list`.");
    s.ctx = it->second;
  }
  if (const char* u = std::getenv("PLATFORM_URL"); u && *u) s.ctx.url = u;
  if (const char* t = std::getenv("PLATFORM_TOKEN"); t && *t) s.ctx.token = t;
  if (!g.org.empty()) s.ctx.org = g.org;
  if (!g.project.empty()) s.ctx.project = g.project;
  if (!g.app.empty()) s.ctx.app = g.app;
  if (!g.env.empty()) s.ctx.env = g.env;
  if (s.ctx.url.empty() || s.ctx.token.empty())
    throw PlatformError(ErrorCode::unauthenticated, "not logged in: no API URL and token",
                        "Run `platformd dev` (it writes a context) or `platform login --url URL --token TOKEN`.");
  return s;
}

std::string settings_source(const Session& s) {
  const auto env = [](const char* name) { const char* v = std::getenv(name); return v && *v; };
  std::vector<std::string> from_env;
  if (env("PLATFORM_URL")) from_env.push_back("PLATFORM_URL");
  if (env("PLATFORM_TOKEN")) from_env.push_back("PLATFORM_TOKEN");
  if (s.context_name.empty()) return from_env.size() == 2 ? "PLATFORM_URL and PLATFORM_TOKEN" : "no context";
  std::string out = "context " + s.context_name;
  if (from_env.size() == 2) out += ", URL and token from PLATFORM_URL and PLATFORM_TOKEN";
  else if (from_env.size() == 1) out += ", " + std::string(from_env[0] == "PLATFORM_URL" ? "URL" : "token") + " from " + from_env[0];
  return out;
}

api::Client Session::client() const {
  if (!client_) {
    client_.emplace(ctx.url, ctx.token);
    client_->set_interrupt(interrupted);  // Ctrl-C ends a request at once, long polls too (exit 130)
    client_->set_warning_sink(print_warning);  // what the server says to act on soon: once, on stderr
  }
  return *client_;
}

std::string Session::need_org() const {
  if (ctx.org.empty())
    throw PlatformError(ErrorCode::invalid_request, "no org selected", "Pass --org NAME or set it in the context.");
  return ctx.org;
}
std::string Session::need_project() const {
  if (ctx.project.empty())
    throw PlatformError(ErrorCode::invalid_request, "no project selected",
                        "Pass --project NAME, or `platform context use " + context_name + " --project NAME`.");
  return ctx.project;
}
std::string Session::need_app() const {
  if (ctx.app.empty())
    throw PlatformError(ErrorCode::invalid_request, "no app selected",
                        "Pass --app NAME, or `platform context use " + context_name + " --app NAME`.");
  return ctx.app;
}

std::string Session::need_env() const {
  if (ctx.env.empty())
    throw PlatformError(ErrorCode::invalid_request, "no env selected",
                        "Pass --env NAME, or `platform context use " + context_name + " --env NAME`.");
  return ctx.env;
}

std::string Session::env_path() const {
  return "/v1/orgs/" + api::url_encode(need_org()) + "/projects/" + api::url_encode(need_project()) + "/apps/" +
         api::url_encode(need_app()) + "/envs/" + api::url_encode(need_env());
}

std::string Session::env_flags() const {
  return " --project " + need_project() + " --app " + need_app() + " --env " + need_env();
}

void print_json(const Json& j) { std::cout << j.dump(2) << "\n" << std::flush; }

std::vector<std::size_t> table_widths(const std::vector<std::string>& headers,
                                      const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(headers.size());
  for (std::size_t i = 0; i < headers.size(); ++i) width[i] = headers[i].size();
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size() && i < width.size(); ++i) width[i] = std::max(width[i], r[i].size());
  return width;
}

std::string table_line(std::vector<std::size_t>& widths, const std::vector<std::string>& cells) {
  if (widths.size() < cells.size()) widths.resize(cells.size(), 0);
  std::string out;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    widths[i] = std::max(widths[i], cells[i].size());
    out += cells[i];
    if (i + 1 < cells.size()) out += std::string(widths[i] - cells[i].size() + 2, ' ');
  }
  out.erase(out.find_last_not_of(' ') + 1);  // empty last cells leave no trailing blanks
  return out;
}

void print_table(const std::vector<std::string>& headers, const std::vector<std::vector<std::string>>& rows) {
  auto width = table_widths(headers, rows);
  std::cout << table_line(width, headers) << "\n";
  for (const auto& r : rows) std::cout << table_line(width, r) << "\n";
  std::cout << std::flush;
}

void note(const Globals& g, const std::string& line) {
  if (!g.quiet) std::cerr << line << "\n";
}

Json call_through_outage(const Globals& g, const std::string& who, const std::function<Json()>& call,
                         std::optional<std::chrono::steady_clock::time_point> deadline) {
  bool down = false;
  for (;;) {
    try {
      auto out = call();
      if (down) note(g, who + ": the API answers again");
      return out;
    } catch (const PlatformError& e) {
      const auto code = e.error().code;
      if (code != ErrorCode::unavailable && code != ErrorCode::timed_out) throw;
      if (deadline && std::chrono::steady_clock::now() + std::chrono::seconds(1) >= *deadline) throw;
      if (!down) note(g, who + ": " + e.error().message + "; retrying");
      down = true;
    }
    for (int i = 0; i < 10; ++i) {
      if (interrupted()) throw PlatformError(ErrorCode::interrupted, "interrupted", "");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

std::map<std::string, std::string> path_names(const std::string& path) {
  std::map<std::string, std::string> out;
  std::istringstream parts(path);
  for (std::string kind, name; std::getline(parts, kind, '/') && std::getline(parts, name, '/');) out[kind] = name;
  return out;
}

std::string address_port(const std::string& ip, int port) {
  return (ip.find(':') == std::string::npos ? ip : "[" + ip + "]") + ":" + std::to_string(port);
}

std::string version_name(const Json& v) { return v.is_number_integer() ? "v" + std::to_string(v.get<std::int64_t>()) : "-"; }

std::string refused_edge(const Json& status) {
  std::set<std::string> instances;
  for (const auto& u : status.value("unreachable", Json::array())) instances.insert(u.value("instance", ""));
  if (instances.empty()) return "";
  return fmt::format("; but {} instance{} the edge's connections (the traffic: lines say which and why)",
                     instances.size(), instances.size() == 1 ? " refuses" : "s refuse");
}

std::string edge_wanted(const Json& edge) {
  return version_name(edge.contains("wanted_version") ? edge["wanted_version"] : edge["version"]);
}

bool ask(const std::string& question) {
  std::cerr << question << " [y/N] " << std::flush;
  std::string answer;
  std::getline(std::cin, answer);
  return answer == "y" || answer == "yes";
}

bool ask_typed(const std::string& question, const std::string& expected) {
  std::cerr << question << "\nType " << expected << " to go ahead: " << std::flush;
  std::string answer;
  std::getline(std::cin, answer);
  return answer == expected;
}

std::string short_duration(std::int64_t s) {
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  if (s < 172800) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

void print_receipt(const Globals& g, const Json& r) {
  if (g.format() != Format::table) {
    if (g.format() == Format::ndjson) std::cout << r.dump() << "\n" << std::flush;
    else print_json(r);
    return;
  }
  const auto& res = r.value("resource", Json::object());
  if (g.quiet) {  // the one handle a script needs: platform wait OP, platform operation describe OP
    std::cout << r.value("operation_id", res.value("id", "")) << "\n" << std::flush;
    return;
  }
  std::cout << r.value("kind", "operation") << ": " << res.value("kind", "") << " " << res.value("path", "") << " ("
            << res.value("id", "") << ")" << (r.value("duplicate", false) ? " [already done: nothing changed]" : "")
            << "\n";
  std::cout << "  operation  " << r.value("operation_id", "") << "  " << r.value("status", "") << "\n";
  if (r.contains("release")) {
    const auto& rel = r["release"];
    std::cout << "  release    " << rel.value("name", "") << " (" << rel.value("id", "") << ")"
              << (r.value("created", true) ? "" : " [existing]") << "\n";
    std::cout << "  image      " << rel.value("image", "") << "\n             " << rel.value("image_digest", "") << "\n";
  }
  if (r.contains("config_version")) std::cout << "  version    config v" << r["config_version"].get<std::int64_t>() << "\n";
  if (r.contains("secrets_version"))
    std::cout << "  version    secrets v" << r["secrets_version"].get<std::int64_t>() << "\n";
  for (const auto& d : r.value("diff", Json::array())) {
    auto action = d.value("action", "");
    auto mark = action == "create" || action == "add" ? "+ " : action == "delete" || action == "remove" ? "- " : "~ ";
    std::cout << "  diff       " << mark << d.value("summary", "") << "\n";
  }
  for (const char* kind : {"config", "secrets"})
    for (const auto& k : r.value("not_delivered", Json::object()).value(kind, Json::array()))
      std::cout << "  not delivered  " << kind << " " << k.get<std::string>()
                << " (set in the env, not declared in platform.toml)\n";
  for (const auto& x : r.value("stranded_endpoints", Json::array()))
    std::cout << "  no backends  " << x.value("text", "") << "\n";
  auto address_line = [](const Json& a) {
    std::cout << "  address    " << a.value("family", "") << " " << a.value("address", "") << " (" << a.value("price", "")
              << (a.value("state", "") == "released" ? ", released" : "") << ")\n";
  };
  if (r.contains("address")) address_line(r["address"]);
  for (const auto& a : r.value("addresses", Json::array())) address_line(a);
  if (r.contains("endpoint")) {
    const auto& e = r["endpoint"];
    std::cout << "  endpoint   " << e.value("name", "") << ": tcp port " << e.value("port", 0) << " -> process "
              << e.value("process", "") << " port " << e.value("internal_port", 0) << " (PROXY "
              << e.value("proxy_protocol", "off") << ")\n";
  }
  if (r.contains("note")) std::cout << "  note       " << r["note"].get<std::string>() << "\n";
  // "#155 EnvReleaseSet (releases-env_…, version 3)": the event's type first; a stream's version counts
  // its events and is not a release's or config's number.
  for (const auto& e : r.value("events", Json::array())) {
    std::cout << "  event      #" << e.value("position", 0);
    if (auto type = e.value("type", ""); !type.empty()) std::cout << " " << type;
    std::cout << " (" << e.value("stream", "") << ", version " << e.value("stream_version", 0) << ")\n";
  }
  if (r.contains("next")) {
    std::cout << "next:\n";
    for (const auto& n : r["next"]) std::cout << "  " << n.get<std::string>() << "\n";
  }
  std::cout << std::flush;
}

namespace {
volatile std::sig_atomic_t g_interrupted = 0;
}
bool interrupted() { return g_interrupted != 0; }
extern "C" void platform_cli_on_sigint(int) { g_interrupted = 1; }

}  // namespace platform::cli
