// The manifest model: sizes, diagnostics, env overrides and the normalised JSON form.
#include <algorithm>
#include <charconv>
#include <cmath>

#include "engine/duration.h"
#include "engine/error_details.h"
#include "engine/manifest/manifest.h"

namespace platform::manifest {
namespace {
// Exact, and readable by parse_duration: "500ms", "10s", "1m30s", "2h".
std::string exact_duration(std::int64_t ms) {
  if (ms % 1000 != 0 || ms == 0) return std::to_string(ms) + "ms";
  auto s = ms / 1000;
  std::string out;
  if (s >= 3600) out += std::to_string(s / 3600) + "h";
  if (s % 3600 >= 60) out += std::to_string(s % 3600 / 60) + "m";
  if (s % 60) out += std::to_string(s % 60) + "s";
  return out;
}

Json health_json(const HealthCheck& h) {
  Json j = {{"type", h.type}, {"interval", exact_duration(h.interval_ms)}, {"timeout", exact_duration(h.timeout_ms)},
            {"grace", exact_duration(h.grace_ms)}, {"threshold", h.threshold}};
  if (h.type != "exec") j["port"] = h.port;
  if (h.type == "http") j["path"] = h.path;
  if (h.type == "exec") j["command"] = h.command;
  return j;
}
}  // namespace

const Process* Manifest::process(std::string_view name) const {
  auto it = std::find_if(processes.begin(), processes.end(), [&](const Process& p) { return p.name == name; });
  return it == processes.end() ? nullptr : &*it;
}

std::string Diagnostic::format() const {
  std::string where = file;
  if (line > 0) where += ":" + std::to_string(line) + ":" + std::to_string(column);
  return where + ": " + message;
}

Json Diagnostic::to_json() const {
  return {{"file", file},       {"line", line},  {"column", column},
          {"key", key},         {"message", message}, {"hint", hint},
          {"code", not_supported ? "not_supported" : "invalid_request"}};
}

int ParseResult::exit_code() const {
  if (diagnostics.empty()) return 0;
  bool all_deferred = std::all_of(diagnostics.begin(), diagnostics.end(), [](const Diagnostic& d) { return d.not_supported; });
  return all_deferred ? 10 : 2;
}

void throw_if_invalid(const ParseResult& result, const std::string& file) {
  if (result.manifest) return;
  Json details = Json::array();
  for (const auto& d : result.diagnostics) {
    auto j = d.to_json();
    j["text"] = d.format() + (d.hint.empty() ? "" : "\n    " + d.hint);
    details.push_back(std::move(j));
  }
  auto count = result.diagnostics.size();
  auto n = std::to_string(count) + (count == 1 ? " problem" : " problems");
  if (result.exit_code() == 10)
    throw DetailedError({ErrorCode::not_supported, file + " uses features that are not in v1 (" + n + ")",
                         "Each one says what to do instead."},
                        details);
  throw DetailedError({ErrorCode::invalid_request, file + " is not a valid manifest (" + n + ")",
                       "Fix them from the top; `platform manifest explain` shows the defaults of a valid one."},
                      details);
}

Manifest for_env(const Manifest& m, const std::string& env) {
  Manifest out = m;
  out.envs.clear();
  auto it = m.envs.find(env);
  if (it == m.envs.end()) return out;
  for (auto& p : out.processes) {
    auto o = it->second.find(p.name);
    if (o == it->second.end()) continue;
    if (o->second.cpu) p.cpu = *o->second.cpu;
    if (o->second.memory_mib) p.memory_mib = *o->second.memory_mib;
    if (o->second.count) p.count = *o->second.count;
  }
  return out;
}

Json to_json(const Manifest& m) {
  Json procs = Json::object();
  for (const auto& p : m.processes) {
    Json j = {{"cpu", p.cpu},
              {"memory", format_size_mib(p.memory_mib)},
              {"count", p.count},
              {"restart",
               {{"policy", p.restart.policy},
                {"max_attempts", p.restart.max_attempts},
                {"backoff", exact_duration(p.restart.backoff_ms)},
                {"max_backoff", exact_duration(p.restart.max_backoff_ms)}}}};
    if (!p.command.empty()) j["command"] = p.command;  // absent: the image's entrypoint and cmd
    if (p.health) j["health"] = health_json(*p.health);
    if (p.stop_timeout_ms) j["stop_timeout"] = exact_duration(*p.stop_timeout_ms);  // absent: the agent's 10 s
    procs[p.name] = std::move(j);
  }
  Json endpoints = Json::array(), routes = Json::array(), volumes = Json::array();
  for (const auto& e : m.endpoints) {
    Json j = {{"name", e.name},         {"protocol", e.protocol}, {"port", e.port},
              {"internal_port", e.internal_port}, {"process", e.process}, {"ipv4", e.ipv4}};
    if (!e.proxy_protocol.empty()) j["proxy_protocol"] = e.proxy_protocol;
    endpoints.push_back(std::move(j));
  }
  for (const auto& r : m.routes) {
    Json j = {{"hostnames", r.hostnames}, {"process", r.process}, {"internal_port", r.internal_port}};
    if (!r.proxy_protocol.empty()) j["proxy_protocol"] = r.proxy_protocol;
    routes.push_back(std::move(j));
  }
  for (const auto& v : m.volumes)
    volumes.push_back({{"name", v.name}, {"size", format_size_mib(v.size_mib)}, {"mount", v.mount}, {"process", v.process}});
  Json out = {{"schema_version", m.schema_version},
              {"app", {{"name", m.app}}},
              {"processes", procs},
              {"endpoints", endpoints},
              {"routes", routes},
              {"volumes", volumes},
              {"config", {{"required", m.config.required}, {"optional", m.config.optional}}},
              {"secrets", {{"required", m.secrets.required}, {"optional", m.secrets.optional}}}};
  if (!m.envs.empty()) {
    Json envs = Json::object();
    for (const auto& [env, procs_o] : m.envs) {
      Json ps = Json::object();
      for (const auto& [name, o] : procs_o) {
        Json j = Json::object();
        if (o.cpu) j["cpu"] = *o.cpu;
        if (o.memory_mib) j["memory"] = format_size_mib(*o.memory_mib);
        if (o.count) j["count"] = *o.count;
        ps[name] = std::move(j);
      }
      envs[env] = {{"processes", ps}};
    }
    out["env"] = envs;
  }
  return out;
}

namespace {
std::int64_t ms_of(const Json& j, const char* key, std::int64_t fallback) {
  if (!j.contains(key)) return fallback;
  auto d = parse_duration(j.at(key).get<std::string>());
  if (!d) throw Json::other_error::create(501, std::string("malformed duration in ") + key, &j);
  return d->count();
}
std::int64_t mib_of(const Json& j, const char* key, std::int64_t fallback) {
  if (!j.contains(key)) return fallback;
  auto m = parse_size_mib(j.at(key).get<std::string>());
  if (!m) throw Json::other_error::create(501, std::string("malformed size in ") + key, &j);
  return *m;
}
}  // namespace

Process process_from_json(const std::string& name, const Json& j) {
  Process p;
  p.name = name;
  p.command = j.value("command", std::vector<std::string>{});
  p.cpu = j.value("cpu", p.cpu);
  p.memory_mib = mib_of(j, "memory", p.memory_mib);
  p.count = j.value("count", p.count);
  if (j.contains("health")) {
    const auto& h = j.at("health");
    HealthCheck c;
    c.type = h.at("type").get<std::string>();
    c.port = h.value("port", 0);
    c.path = h.value("path", c.path);
    c.command = h.value("command", std::vector<std::string>{});
    c.interval_ms = ms_of(h, "interval", c.interval_ms);
    c.timeout_ms = ms_of(h, "timeout", c.timeout_ms);
    c.grace_ms = ms_of(h, "grace", c.grace_ms);
    c.threshold = h.value("threshold", c.threshold);
    p.health = c;
  }
  if (j.contains("restart")) {
    const auto& r = j.at("restart");
    p.restart.policy = r.value("policy", p.restart.policy);
    p.restart.max_attempts = r.value("max_attempts", p.restart.max_attempts);
    p.restart.backoff_ms = ms_of(r, "backoff", p.restart.backoff_ms);
    p.restart.max_backoff_ms = ms_of(r, "max_backoff", p.restart.max_backoff_ms);
  }
  if (j.contains("stop_timeout")) p.stop_timeout_ms = ms_of(j, "stop_timeout", 10'000);
  return p;
}

std::optional<std::int64_t> parse_size_mib(std::string_view s) {
  struct Unit {
    std::string_view suffix;
    double mib;
  };
  static constexpr Unit kUnits[] = {{"KiB", 1.0 / 1024}, {"MiB", 1}, {"GiB", 1024}, {"TiB", 1024 * 1024}};
  double factor = 1;
  bool found = false;
  for (const auto& u : kUnits)
    if (s.size() > u.suffix.size() && s.substr(s.size() - u.suffix.size()) == u.suffix) {
      factor = u.mib;
      s.remove_suffix(u.suffix.size());
      found = true;
      break;
    }
  if (!found && !s.empty() && !(s.back() >= '0' && s.back() <= '9')) return std::nullopt;  // "512MB", "1G"
  if (s.empty() || s.size() > 20 || !(s[0] >= '0' && s[0] <= '9')) return std::nullopt;
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::fixed);
  if (ec != std::errc{} || ptr != s.data() + s.size() || !std::isfinite(v) || v < 0) return std::nullopt;
  double mib = v * factor;
  if (mib > 1e12 || mib != std::floor(mib)) return std::nullopt;  // whole MiB only
  return static_cast<std::int64_t>(mib);
}

std::string format_size_mib(std::int64_t mib) {
  if (mib >= 1024 * 1024 && mib % (1024 * 1024) == 0) return std::to_string(mib / (1024 * 1024)) + "TiB";
  if (mib >= 1024 && mib % 1024 == 0) return std::to_string(mib / 1024) + "GiB";
  return std::to_string(mib) + "MiB";
}

}  // namespace platform::manifest
