// platform.toml v1: strict parsing and validation. Every problem is collected, with file:line:col.
#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "engine/manifest/manifest.h"
#include "engine/manifest/reader.h"
#include "engine/names.h"
#include "engine/suggest.h"

namespace platform::manifest {
namespace {
using detail::Diagnostics;
using detail::TableReader;

constexpr std::int64_t kMaxMemoryMib = 256 * 1024;
constexpr std::int64_t kHour = 3'600'000;

std::string in_quotes(std::string_view s) { return "\"" + std::string(s.substr(0, 80)) + "\""; }

void check_name(Diagnostics& d, const toml::source_region& at, const std::string& key, std::string_view kind,
                const std::string& name) {
  if (!valid_name(name)) d.error(at, key, "invalid " + std::string(kind) + " name " + in_quotes(name), name_rule_for(name));
}

// A DNS hostname for SNI, lowercase, optionally one leading "*." wildcard label.
bool valid_hostname(std::string_view h) {
  if (h.rfind("*.", 0) == 0) h.remove_prefix(2);
  if (h.empty() || h.size() > 253 || h.find('.') == std::string_view::npos) return false;
  std::size_t start = 0;
  while (start <= h.size()) {
    auto dot = h.find('.', start);
    auto label = h.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

std::optional<HealthCheck> read_health(TableReader& r, const toml::table& t) {
  TableReader h(t, r.key_path("health"), r.diagnostics());
  HealthCheck c;
  auto type = h.choice("type", {"tcp", "http", "exec"}, true);
  if (auto v = h.integer("port", 1, 65535)) c.port = static_cast<int>(*v);
  if (auto v = h.string("path")) {
    if (v->empty() || (*v)[0] != '/')
      h.diagnostics().error(t.get("path")->source(), h.key_path("path"), h.key_path("path") + " must start with '/'");
    c.path = *v;
  }
  if (auto v = h.strings("command")) c.command = *v;
  if (auto v = h.duration_ms("interval", 1'000, kHour)) c.interval_ms = *v;
  if (auto v = h.duration_ms("timeout", 100, kHour)) c.timeout_ms = *v;
  if (auto v = h.duration_ms("grace", 0, kHour)) c.grace_ms = *v;
  if (auto v = h.integer("threshold", 1, 100)) c.threshold = static_cast<int>(*v);
  h.finish("A health check has type, port, path, command, interval, timeout, grace and threshold.");
  if (!type) return std::nullopt;
  c.type = *type;
  if (c.type == "exec" && c.command.empty())
    h.diagnostics().error(t.source(), h.key_path("command"), "an exec health check needs command = [\"...\"]");
  if (c.type != "exec" && !c.command.empty())
    h.diagnostics().error(t.get("command")->source(), h.key_path("command"),
                          "command is only for exec health checks, not " + c.type);
  if (c.type != "http" && t.contains("path"))
    h.diagnostics().error(t.get("path")->source(), h.key_path("path"), "path is only for http health checks");
  if (c.timeout_ms > c.interval_ms)
    h.diagnostics().error(t.source(), h.key_path("timeout"), "the health check's timeout is longer than its interval",
                          "Make timeout at most interval.");
  return c;
}

RestartPolicy read_restart(TableReader& r, const toml::node& n) {
  RestartPolicy p;
  if (n.is_string()) {  // restart = "on-failure"
    if (auto v = r.choice("restart", {"always", "on-failure", "never"})) p.policy = *v;
    return p;
  }
  const auto* t = r.subtable("restart");
  if (!t) return p;
  TableReader rr(*t, r.key_path("restart"), r.diagnostics());
  if (auto v = rr.choice("policy", {"always", "on-failure", "never"})) p.policy = *v;
  if (auto v = rr.integer("max_attempts", 0, 1'000'000)) p.max_attempts = static_cast<int>(*v);
  if (auto v = rr.duration_ms("backoff", 100, kHour)) p.backoff_ms = *v;
  if (auto v = rr.duration_ms("max_backoff", 100, 24 * kHour)) p.max_backoff_ms = *v;
  rr.finish("A restart policy has policy, max_attempts, backoff and max_backoff.");
  if (p.max_backoff_ms < p.backoff_ms)
    rr.diagnostics().error(t->source(), rr.key_path("max_backoff"), "max_backoff is shorter than backoff");
  return p;
}

void read_processes(TableReader& root, Manifest& m) {
  const auto* procs = root.subtable("processes");
  if (!procs) {
    if (!root.table().contains("processes"))
      root.diagnostics().error(root.table().source(), "processes", "the manifest declares no process",
                               "Add one, e.g. [processes.web] with command = [\"./server\"].");
    return;
  }
  for (const auto& [k, v] : *procs) {
    std::string name(k.str());
    auto path = "processes." + name;
    const auto* t = v.as_table();
    if (!t) {
      root.diagnostics().error(v.source(), path, path + " must be a table ([" + path + "])");
      continue;
    }
    check_name(root.diagnostics(), k.source(), path, "process", name);
    TableReader r(*t, path, root.diagnostics());
    Process p;
    p.name = name;
    if (const auto* c = r.node("command")) {
      if (c->is_string()) {
        p.command = {"/bin/sh", "-c", *c->value<std::string>()};
      } else if (auto v2 = r.strings("command")) {
        p.command = *v2;
        if (p.command.empty())
          r.diagnostics().error(c->source(), path + ".command", "command is empty",
                                "Leave command out to run the image's entrypoint and cmd.");
      }
    }
    if (auto v2 = r.number("cpu", 0.05, 64)) p.cpu = *v2;
    if (auto v2 = r.size_mib("memory", 64, kMaxMemoryMib)) p.memory_mib = *v2;
    if (auto v2 = r.integer("count", 0, 1000)) p.count = static_cast<int>(*v2);
    if (const auto* h = r.subtable("health")) p.health = read_health(r, *h);
    if (const auto* rs = r.node("restart")) p.restart = read_restart(r, *rs);
    if (auto v2 = r.duration_ms("stop_timeout", 1'000, kHour)) p.stop_timeout_ms = *v2;
    r.deferred({"autoscale", "autoscaling", "min_count", "max_count", "scaling"}, detail::kAutoscaling);
    r.deferred({"region", "regions"}, detail::kMultiRegion);
    r.finish("A process has command, cpu, memory, count, health, restart and stop_timeout.");
    m.processes.push_back(std::move(p));
  }
  if (procs->empty())
    root.diagnostics().error(procs->source(), "processes", "the manifest declares no process",
                             "Add one, e.g. [processes.web] with command = [\"./server\"].");
}

// Calls f(table, reader) for each table of the array `section` ([[endpoints]], [[routes]], [[volumes]]).
template <class F>
void each_item(TableReader& root, std::string_view section, F&& f) {
  const auto* arr = root.array_of_tables(section);
  if (!arr) return;
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const auto& t = *(*arr)[i].as_table();
    TableReader r(t, std::string(section) + "[" + std::to_string(i) + "]", root.diagnostics());
    f(t, r);
  }
}

std::string read_proxy(TableReader& r) {
  auto v = r.choice("proxy_protocol", {"v2"});
  return v ? *v : "";
}

void read_endpoints(TableReader& root, Manifest& m) {
  each_item(root, "endpoints", [&](const toml::table& t, TableReader& r) {
    Endpoint e;
    if (const auto* p = t.get("protocol"); p && p->is_string()) {
      auto proto = *p->value<std::string>();
      if (proto == "http" || proto == "https") {
        r.node("protocol");
        r.diagnostics().deferred(p->source(), r.key_path("protocol"),
                                 proto == "http" ? detail::kHttpRouting : detail::kManagedTls);
      } else if (proto == "udp") {
        r.node("protocol");
        r.diagnostics().deferred(p->source(), r.key_path("protocol"), detail::kUdp);
      } else if (auto v = r.choice("protocol", {"tcp"})) {
        e.protocol = *v;
      }
    } else if (auto v = r.choice("protocol", {"tcp"})) {
      e.protocol = *v;
    }
    if (auto v = r.integer("port", 1, 65535, true)) e.port = static_cast<int>(*v);
    if (auto v = r.integer("internal_port", 1, 65535)) e.internal_port = static_cast<int>(*v);
    if (auto v = r.string("process", true)) e.process = *v;
    if (auto v = r.boolean("ipv4")) e.ipv4 = *v;
    e.proxy_protocol = read_proxy(r);
    if (auto v = r.string("name")) {
      check_name(r.diagnostics(), t.get("name")->source(), r.key_path("name"), "endpoint", *v);
      e.name = *v;
    }
    r.deferred({"tls", "handlers", "certificate", "certificates", "force_https"}, detail::kManagedTls);
    r.deferred({"host", "hosts", "hostname", "hostnames", "path", "paths"}, detail::kHttpRouting);
    r.finish("An endpoint has port, internal_port, process, protocol, ipv4, proxy_protocol and name.");
    if (e.internal_port == 0) e.internal_port = e.port;
    if (e.name.empty()) e.name = e.process + "-" + std::to_string(e.port);
    m.endpoints.push_back(std::move(e));
  });
}

void read_routes(TableReader& root, Manifest& m) {
  each_item(root, "routes", [&](const toml::table& t, TableReader& r) {
    Route rt;
    if (auto v = r.strings("hostnames", true)) {
      rt.hostnames = *v;
      if (rt.hostnames.empty())
        r.diagnostics().error(t.get("hostnames")->source(), r.key_path("hostnames"), "a route needs at least one hostname");
      for (const auto& h : rt.hostnames)
        if (!valid_hostname(h))
          r.diagnostics().error(t.get("hostnames")->source(), r.key_path("hostnames"),
                                "invalid SNI hostname " + in_quotes(h),
                                "Use a lowercase DNS name such as \"shop.example.com\" or \"*.example.com\".");
    }
    if (auto v = r.string("process", true)) rt.process = *v;
    if (auto v = r.integer("internal_port", 1, 65535, true)) rt.internal_port = static_cast<int>(*v);
    rt.proxy_protocol = read_proxy(r);
    r.deferred({"host", "hosts", "path", "paths", "http", "headers"}, detail::kHttpRouting);
    r.deferred({"tls", "certificate", "certificates", "terminate"}, detail::kManagedTls);
    r.finish("A route has hostnames, process, internal_port and proxy_protocol (it always listens on 443).");
    m.routes.push_back(std::move(rt));
  });
}

void read_volumes(TableReader& root, Manifest& m) {
  each_item(root, "volumes", [&](const toml::table& t, TableReader& r) {
    Volume v;
    if (auto s = r.string("name", true)) {
      check_name(r.diagnostics(), t.get("name")->source(), r.key_path("name"), "volume", *s);
      v.name = *s;
    }
    if (auto s = r.size_mib("size", 64, 16 * 1024 * 1024, true)) v.size_mib = *s;
    if (auto s = r.string("mount", true)) {
      if (s->empty() || (*s)[0] != '/' || s->find("..") != std::string::npos || *s == "/")
        r.diagnostics().error(t.get("mount")->source(), r.key_path("mount"), "mount must be an absolute path below /",
                              "e.g. mount = \"/var/lib/data\"");
      v.mount = *s;
    }
    if (auto s = r.string("process", true)) v.process = *s;
    r.finish("A volume has name, size, mount and process.");
    m.volumes.push_back(std::move(v));
  });
}

void read_keys(TableReader& root, const char* section, KeySurface& out) {
  const auto* t = root.subtable(section);
  if (!t) return;
  TableReader r(*t, section, root.diagnostics());
  using Slot = std::pair<const char*, std::vector<std::string>*>;
  for (auto [key, list] : {Slot{"required", &out.required}, Slot{"optional", &out.optional}}) {
    auto v = r.strings(key);
    if (!v) continue;
    for (const auto& k : *v) {
      if (!valid_var_name(k))
        r.diagnostics().error(t->get(key)->source(), r.key_path(key), "invalid variable name " + in_quotes(k),
                              std::string(kVarNameRule));
      else if (k.rfind("PLATFORM_", 0) == 0)
        r.diagnostics().error(t->get(key)->source(), r.key_path(key), in_quotes(k) + " uses the reserved PLATFORM_ prefix",
                              "The platform sets PLATFORM_* variables itself; choose another name.");
      list->push_back(k);
    }
  }
  r.finish(std::string("[") + section + "] has required and optional, each a list of variable names.");
}

void read_envs(TableReader& root, Manifest& m) {
  const auto* envs = root.subtable("env");
  if (!envs) return;
  const char* only = "Only processes.NAME.count, cpu and memory can differ per env.";
  for (const auto& [k, v] : *envs) {
    std::string env(k.str());
    auto path = "env." + env;
    check_name(root.diagnostics(), k.source(), path, "env", env);
    const auto* t = v.as_table();
    if (!t) {
      root.diagnostics().error(v.source(), path, path + " must be a table ([" + path + "])");
      continue;
    }
    TableReader r(*t, path, root.diagnostics());
    auto& overrides = m.envs[env];
    if (const auto* procs = r.subtable("processes")) {
      for (const auto& [pk, pv] : *procs) {
        std::string pname(pk.str());
        auto ppath = path + ".processes." + pname;
        const auto* pt = pv.as_table();
        if (!pt) {
          root.diagnostics().error(pv.source(), ppath, ppath + " must be a table");
          continue;
        }
        if (!m.process(pname))
          root.diagnostics().error(pk.source(), ppath, "env " + env + " overrides process " + in_quotes(pname) +
                                                           ", which the manifest does not declare");
        TableReader pr(*pt, ppath, root.diagnostics());
        ProcessOverride o;
        o.cpu = pr.number("cpu", 0.05, 64);
        o.memory_mib = pr.size_mib("memory", 64, kMaxMemoryMib);
        if (auto c = pr.integer("count", 0, 1000)) o.count = static_cast<int>(*c);
        pr.finish(only);
        overrides[pname] = o;
      }
    }
    r.finish(only);
  }
}

// Checks that need the whole manifest: references, duplicates, clashes.
void cross_check(const toml::table& root, Manifest& m, Diagnostics& d) {
  auto at = [&](std::string_view section, std::size_t i) -> toml::source_region {
    if (const auto* arr = root.get_as<toml::array>(section); arr && i < arr->size()) return (*arr)[i].source();
    return root.source();
  };
  auto need_process = [&](std::string_view section, std::size_t i, const std::string& name) {
    if (!name.empty() && !m.process(name)) {
      std::vector<std::string_view> names;
      for (const auto& p : m.processes) names.push_back(p.name);
      auto best = did_you_mean(name, names);
      d.error(at(section, i), std::string(section) + "[" + std::to_string(i) + "].process",
              "unknown process " + in_quotes(name) + (best.empty() ? "" : " (did you mean \"" + best + "\"?)"),
              "Declare it as [processes." + name + "] or name one of the declared processes.");
    }
  };
  std::map<int, std::size_t> ports;
  std::set<std::string> endpoint_names;
  for (std::size_t i = 0; i < m.endpoints.size(); ++i) {
    const auto& e = m.endpoints[i];
    need_process("endpoints", i, e.process);
    if (auto [it, fresh] = ports.emplace(e.port, i); !fresh && e.port != 0)
      d.error(at("endpoints", i), "endpoints[" + std::to_string(i) + "].port",
              "port " + std::to_string(e.port) + " is declared by endpoints[" + std::to_string(it->second) +
                  "] too");
    if (!endpoint_names.insert(e.name).second)
      d.error(at("endpoints", i), "endpoints[" + std::to_string(i) + "].name", "endpoint name " + in_quotes(e.name) + " is used twice");
  }
  std::map<std::string, std::size_t> hosts;
  for (std::size_t i = 0; i < m.routes.size(); ++i) {
    need_process("routes", i, m.routes[i].process);
    for (const auto& h : m.routes[i].hostnames)
      if (auto [it, fresh] = hosts.emplace(h, i); !fresh)
        d.error(at("routes", i), "routes[" + std::to_string(i) + "].hostnames",
                "hostname " + in_quotes(h) + " is routed by routes[" + std::to_string(it->second) + "] too");
  }
  std::set<std::string> volume_names;
  for (std::size_t i = 0; i < m.volumes.size(); ++i) {
    const auto& v = m.volumes[i];
    need_process("volumes", i, v.process);
    if (!v.name.empty() && !volume_names.insert(v.name).second)
      d.error(at("volumes", i), "volumes[" + std::to_string(i) + "].name", "volume name " + in_quotes(v.name) + " is used twice");
    auto check_count = [&](const std::string& env, int count) {
      if (count > 1)
        d.error(at("volumes", i), "volumes[" + std::to_string(i) + "].process",
                "volume " + in_quotes(v.name) + " is mounted by process " + in_quotes(v.process) + ", which has count " +
                    std::to_string(count) + (env.empty() ? "" : " in env " + env),
                "A volume belongs to one instance: give that process count = 1.");
    };
    if (const auto* p = m.process(v.process)) {
      check_count("", p->count);
      for (const auto& [env, procs] : m.envs)
        if (auto it = procs.find(v.process); it != procs.end() && it->second.count) check_count(env, *it->second.count);
    }
  }
  std::set<std::string> keys;
  using List = std::tuple<const char*, const char*, const std::vector<std::string>*>;
  for (auto [section, which, list] : {List{"config", "required", &m.config.required}, List{"config", "optional", &m.config.optional},
                                      List{"secrets", "required", &m.secrets.required},
                                      List{"secrets", "optional", &m.secrets.optional}})
    for (const auto& k : *list)
      if (!keys.insert(k).second) {
        const auto* n = root.at_path(std::string(section) + "." + which).node();
        d.error(n ? n->source() : root.source(), std::string(section) + "." + which,
                "variable " + in_quotes(k) + " is declared more than once in [config] and [secrets]",
                "Declare each variable once: as config (visible) or as a secret (never shown).");
      }
  for (auto& p : m.processes)  // a tcp/http check without a port probes the process's first declared port
    if (p.health && p.health->type != "exec" && p.health->port == 0) {
      for (const auto& e : m.endpoints)
        if (e.process == p.name && p.health->port == 0) p.health->port = e.internal_port;
      for (const auto& r : m.routes)
        if (r.process == p.name && p.health->port == 0) p.health->port = r.internal_port;
      const auto* h = root.at_path("processes." + p.name + ".health").node();
      if (p.health->port == 0)
        d.error(h ? h->source() : root.source(), "processes." + p.name + ".health.port",
                "the " + p.health->type + " health check of process " + in_quotes(p.name) + " needs a port",
                "Set port = ..., or declare an endpoint or route for the process.");
    }
}
}  // namespace

ParseResult parse(std::string_view text, std::string_view file) {
  ParseResult out;
  Diagnostics d{std::string(file)};
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    d.error(e.source(), "", "not valid TOML: " + std::string(e.description()),
            "See https://toml.io for the syntax; strings need quotes, tables are [name].");
    out.diagnostics = d.take();
    return out;
  }
  TableReader r(root, "", d);
  Manifest m;
  if (auto v = r.integer("schema_version", 0, 1'000'000, true)) {
    if (*v != 1)
      d.error(root.get("schema_version")->source(), "schema_version",
              "schema_version " + std::to_string(*v) + " is not supported: this platform reads schema_version = 1",
              "Write schema_version = 1, or upgrade the platform CLI and server.");
  }
  if (const auto* app = r.subtable("app")) {
    TableReader a(*app, "app", d);
    if (auto name = a.string("name", true)) {
      check_name(d, app->get("name")->source(), "app.name", "app", *name);
      m.app = *name;
    }
    a.deferred({"region", "regions", "primary_region"}, detail::kMultiRegion);
    a.finish("[app] has name.");
  } else if (!root.contains("app")) {
    d.error(root.source(), "app", "missing [app] with name = \"...\"", "Add [app] and name = \"my-app\".");
  }
  read_processes(r, m);
  read_endpoints(r, m);
  read_routes(r, m);
  read_volumes(r, m);
  read_keys(r, "config", m.config);
  read_keys(r, "secrets", m.secrets);
  read_envs(r, m);
  r.deferred({"http", "http_service", "http_services", "services", "handlers"}, detail::kHttpRouting);
  r.deferred({"tls", "certificates", "certs", "acme"}, detail::kManagedTls);
  r.deferred({"autoscale", "autoscaling", "scaling"}, detail::kAutoscaling);
  r.deferred({"deploy", "strategy", "canary", "blue_green", "bluegreen"}, detail::kDeployStrategies);
  r.deferred({"database", "databases", "postgres", "postgresql", "mysql", "redis", "addons"}, detail::kManagedDatabases);
  r.deferred({"region", "regions", "primary_region"}, detail::kMultiRegion);
  r.finish("The top level has schema_version, [app], [processes.*], [[endpoints]], [[routes]], [[volumes]], "
           "[config], [secrets] and [env.*].");
  cross_check(root, m, d);
  out.diagnostics = d.take();
  std::stable_sort(out.diagnostics.begin(), out.diagnostics.end(), [](const Diagnostic& a, const Diagnostic& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  if (out.diagnostics.empty()) out.manifest = std::move(m);
  return out;
}

}  // namespace platform::manifest
