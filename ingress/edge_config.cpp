#include "ingress/edge_config.h"

#include <arpa/inet.h>

#include <map>
#include <set>

#include "engine/error.h"
#include "ingress/client_hello.h"

namespace platform::ingress {
namespace {

[[noreturn]] void bad(const std::string& what) {
  throw PlatformError(ErrorCode::invalid_request, "edge config: " + what,
                      "See docs/edge.md#config for the snapshot's shape.");
}

void only(const Json& j, const std::string& where, std::initializer_list<const char*> keys) {
  if (!j.is_object()) bad(where + " is not an object");
  for (const auto& [k, _] : j.items()) {
    bool known = false;
    for (const char* key : keys) known |= k == key;
    if (!known) bad(where + " has an unknown field \"" + k + "\"");
  }
}

Address address(const Json& j, const std::string& where) {
  only(j, where, {"address", "port"});
  if (!j.contains("address") || !j["address"].is_string()) bad(where + ".address is missing");
  if (!j.contains("port") || !j["port"].is_number_integer()) bad(where + ".port is missing");
  Address a{j["address"].get<std::string>(), 0};
  const auto port = j["port"].get<std::int64_t>();
  if (port < 1 || port > 65535) bad(where + ".port " + std::to_string(port) + " is not from 1 to 65535");
  a.port = static_cast<std::uint16_t>(port);
  unsigned char buf[16];
  if (::inet_pton(a.v6() ? AF_INET6 : AF_INET, a.ip.c_str(), buf) != 1) bad(where + ".address \"" + a.ip + "\" is not an IP address");
  return a;
}

std::vector<Address> addresses(const Json& j, const std::string& where) {
  std::vector<Address> out;
  if (j.is_null()) return out;
  if (!j.is_array()) bad(where + " is not an array");
  for (std::size_t i = 0; i < j.size(); ++i) out.push_back(address(j[i], where + "[" + std::to_string(i) + "]"));
  return out;
}

void target(const Json& j, const std::string& where, Target& t) {
  t.id = j.value("id", "");
  t.name = j.value("name", t.id);
  if (t.id.empty()) bad(where + ".id is missing");
  const auto pp = j.value("proxy_protocol", Json());
  if (!pp.is_null() && pp != "v2") bad(where + ".proxy_protocol is not \"v2\"");
  t.proxy_v2 = pp == "v2";
  t.max_connections = j.value("max_connections", 0);
  if (t.max_connections < 0) bad(where + ".max_connections is negative");
  t.backends = addresses(j.value("backends", Json::array()), where + ".backends");
}

int limit(const Json& l, const char* key, int fallback, int lo, int hi) {
  if (!l.contains(key)) return fallback;
  if (!l[key].is_number_integer() || l[key].get<std::int64_t>() < lo || l[key].get<std::int64_t>() > hi)
    bad(std::string("limits.") + key + " is not from " + std::to_string(lo) + " to " + std::to_string(hi));
  return l[key].get<int>();
}

}  // namespace

const Route* EdgeConfig::route_for(const std::string& sni) const {
  const Route* best = nullptr;
  std::size_t best_len = 0;
  for (const auto& r : routes)
    for (const auto& h : r.hostnames) {
      if (h == sni) return &r;
      if (h.rfind("*.", 0) == 0 && sni.size() > h.size() - 1 && sni.compare(sni.size() - (h.size() - 1), h.size() - 1, h, 1) == 0 &&
          h.size() > best_len) {
        best = &r;
        best_len = h.size();
      }
    }
  return best;
}

std::shared_ptr<const EdgeConfig> parse_edge_config(const Json& j) {
  only(j, "the snapshot", {"version", "limits", "endpoints", "tls", "generated_at"});
  auto c = std::make_shared<EdgeConfig>();
  c->version = j.value("version", std::int64_t{0});
  if (j.contains("limits")) {
    const auto& l = j["limits"];
    only(l, "limits", {"max_connections", "connect_timeout_ms", "idle_timeout_ms", "hello_timeout_ms", "max_hello_bytes"});
    c->limits.max_connections = limit(l, "max_connections", c->limits.max_connections, 1, 10'000'000);
    c->limits.connect_timeout_ms = limit(l, "connect_timeout_ms", c->limits.connect_timeout_ms, 1, 600'000);
    c->limits.idle_timeout_ms = limit(l, "idle_timeout_ms", c->limits.idle_timeout_ms, 1, 86'400'000);
    c->limits.hello_timeout_ms = limit(l, "hello_timeout_ms", c->limits.hello_timeout_ms, 1, 600'000);
    c->limits.max_hello_bytes = limit(l, "max_hello_bytes", c->limits.max_hello_bytes, 512, 1 << 20);
  }
  std::set<std::string> ports;  // every listening address once
  auto claim = [&](const Address& a, const std::string& who) {
    if (!ports.insert(a.str()).second) bad(a.str() + " is listened on twice (again by " + who + ")");
  };
  const Json endpoints = j.value("endpoints", Json::array());
  if (!endpoints.is_array()) bad("endpoints is not an array");
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    const auto where = "endpoints[" + std::to_string(i) + "]";
    only(endpoints[i], where, {"id", "name", "listen", "proxy_protocol", "max_connections", "backends"});
    Endpoint e;
    target(endpoints[i], where, e);
    e.listen = addresses(endpoints[i].value("listen", Json::array()), where + ".listen");
    if (e.listen.empty()) bad(where + " listens nowhere");
    for (const auto& a : e.listen) claim(a, "endpoint " + e.name);
    c->endpoints.push_back(std::move(e));
  }
  if (j.contains("tls")) {
    const auto& t = j["tls"];
    only(t, "tls", {"listen", "routes"});
    c->tls_listen = addresses(t.value("listen", Json::array()), "tls.listen");
    for (const auto& a : c->tls_listen) claim(a, "the TLS listener");
    const Json routes = t.value("routes", Json::array());
    if (!routes.is_array()) bad("tls.routes is not an array");
    std::map<std::string, std::string> held;
    for (std::size_t i = 0; i < routes.size(); ++i) {
      const auto where = "tls.routes[" + std::to_string(i) + "]";
      only(routes[i], where, {"id", "name", "hostnames", "proxy_protocol", "max_connections", "backends"});
      Route r;
      target(routes[i], where, r);
      const Json names = routes[i].value("hostnames", Json::array());
      if (!names.is_array() || names.empty()) bad(where + ".hostnames is empty");
      for (const auto& n : names) {
        if (!n.is_string() || !valid_route_hostname(n.get<std::string>()))
          bad(where + ".hostnames has \"" + n.dump() + "\", which is not a lowercase host name");
        const auto name = n.get<std::string>();
        if (auto [it, fresh] = held.emplace(name, r.name); !fresh) bad(name + " is held by two routes (" + it->second + ")");
        r.hostnames.push_back(name);
      }
      c->routes.push_back(std::move(r));
    }
  }
  return c;
}

}  // namespace platform::ingress
