#include "api/release_diff.h"

#include <fmt/format.h>

#include <set>

namespace platform::api {
namespace {

std::string show(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "none";
  return v.dump();
}

Json change(const std::string& kind, const std::string& action, const std::string& name, std::string summary) {
  return {{"kind", kind}, {"action", action}, {"name", name}, {"summary", std::move(summary)}};
}

// Items of an array keyed by `key_of`, or of an object keyed by its keys.
std::map<std::string, Json> keyed(const Json& v, const std::function<std::string(const Json&)>& key_of) {
  std::map<std::string, Json> out;
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) out[it.key()] = it.value();
  } else if (v.is_array()) {
    for (const auto& item : v) out[key_of(item)] = item;
  }
  return out;
}

// Field-level differences of two objects, nested objects compared whole.
Json field_changes(const Json& a, const Json& b) {
  std::set<std::string> fields;
  for (auto it = a.begin(); it != a.end(); ++it) fields.insert(it.key());
  for (auto it = b.begin(); it != b.end(); ++it) fields.insert(it.key());
  Json out = Json::array();
  for (const auto& f : fields) {
    Json x = a.contains(f) ? a[f] : Json(), y = b.contains(f) ? b[f] : Json();
    if (x != y) out.push_back({{"field", f}, {"from", x}, {"to", y}});
  }
  return out;
}

std::string fields_summary(const Json& fields) {
  std::string s;
  for (const auto& f : fields) {
    if (!s.empty()) s += ", ";
    const auto& from = f["from"];
    const auto& to = f["to"];
    if (from.is_object() || to.is_object() || from.is_array() || to.is_array())
      s += f["field"].get<std::string>() + (from.is_null() ? " added" : to.is_null() ? " removed" : " changed");
    else
      s += fmt::format("{} {} → {}", f["field"].get<std::string>(), show(from), show(to));
  }
  return s;
}

void diff_set(Json& out, const std::string& kind, const std::map<std::string, Json>& a,
              const std::map<std::string, Json>& b, const std::function<std::string(const Json&)>& describe,
              bool with_fields) {
  for (const auto& [name, v] : b) {
    auto old = a.find(name);
    if (old == a.end()) {
      out.push_back(change(kind, "add", name, fmt::format("add {} {}{}", kind, name, describe(v))));
    } else if (old->second != v) {
      auto c = change(kind, "change", name, "");
      if (with_fields && v.is_object() && old->second.is_object()) {
        c["fields"] = field_changes(old->second, v);
        c["summary"] = fmt::format("change {} {}: {}", kind, name, fields_summary(c["fields"]));
      } else {
        c["summary"] = fmt::format("change {} {}{}", kind, name, describe(v));
      }
      out.push_back(std::move(c));
    }
  }
  for (const auto& [name, v] : a)
    if (!b.count(name)) out.push_back(change(kind, "remove", name, fmt::format("remove {} {}", kind, name)));
}

const Json& at(const Json& j, const char* a, const char* b = nullptr) {
  static const Json null;
  if (!j.is_object() || !j.contains(a)) return null;
  if (!b) return j[a];
  if (!j[a].is_object() || !j[a].contains(b)) return null;
  return j[a][b];
}

}  // namespace

Json diff_releases(const Json& from, const Json& to) {
  Json out = Json::array();
  // Image: the digest is what runs; the ref is how it was named.
  const auto& fd = at(from, "image", "digest");
  const auto& td = at(to, "image", "digest");
  if (fd != td) {
    auto c = change("image", fd.is_null() ? "add" : "change", "image",
                    fd.is_null() ? fmt::format("image {} ({})", show(at(to, "image", "ref")), show(td))
                                 : fmt::format("image {} ({}) → {} ({})", show(at(from, "image", "ref")), show(fd),
                                               show(at(to, "image", "ref")), show(td)));
    c["from"] = fd;
    c["to"] = td;
    out.push_back(std::move(c));
  }
  auto none = [](const Json&) { return std::string(); };
  auto by_name = [](const Json& v) { return v.value("name", std::string()); };
  diff_set(
      out, "process", keyed(at(from, "manifest", "processes"), by_name), keyed(at(to, "manifest", "processes"), by_name),
      [](const Json& p) {
        return fmt::format(": count {}, cpu {}, memory {}", show(p.value("count", Json())), show(p.value("cpu", Json())),
                           show(p.value("memory", Json())));
      },
      true);
  diff_set(
      out, "endpoint", keyed(at(from, "manifest", "endpoints"), by_name), keyed(at(to, "manifest", "endpoints"), by_name),
      [](const Json& e) {
        return fmt::format(": tcp {} → {}:{}{}{}", show(e.value("port", Json())), show(e.value("process", Json())),
                           show(e.value("internal_port", Json())), e.value("ipv4", false) ? ", ipv4" : "",
                           e.contains("proxy_protocol") ? ", proxy protocol v2" : "");
      },
      true);
  auto by_hosts = [](const Json& r) {
    std::string k;
    for (const auto& h : r.value("hostnames", Json::array())) k += (k.empty() ? "" : ",") + h.get<std::string>();
    return k;
  };
  diff_set(
      out, "route", keyed(at(from, "manifest", "routes"), by_hosts), keyed(at(to, "manifest", "routes"), by_hosts),
      [](const Json& r) {
        return fmt::format(": sni → {}:{}", show(r.value("process", Json())), show(r.value("internal_port", Json())));
      },
      true);
  diff_set(
      out, "volume", keyed(at(from, "manifest", "volumes"), by_name), keyed(at(to, "manifest", "volumes"), by_name),
      [](const Json& v) {
        return fmt::format(": {} at {} for {}", show(v.value("size", Json())), show(v.value("mount", Json())),
                           show(v.value("process", Json())));
      },
      true);
  diff_set(out, "config", keyed(at(from, "config", "keys"), none), keyed(at(to, "config", "keys"), none),
           [](const Json&) { return std::string(" (value redacted)"); }, false);
  diff_set(out, "secret", keyed(at(from, "secrets", "keys"), none), keyed(at(to, "secrets", "keys"), none),
           [](const Json&) { return std::string(" (value redacted)"); }, false);
  return out;
}

}  // namespace platform::api
