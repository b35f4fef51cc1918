#include "cli/event_detail.h"

#include <fmt/format.h>

namespace platform::cli {
namespace {

std::string str(const Json& d, const char* key) {
  auto it = d.find(key);
  return it != d.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Event data comes from the server, but a table never fails on a field of an unexpected type.
double num(const Json& d, const char* key) {
  auto it = d.find(key);
  return it != d.end() && it->is_number() ? it->get<double>() : 0;
}
long long whole(const Json& d, const char* key) { return static_cast<long long>(num(d, key)); }

std::string joined(const Json& list) {
  std::string out;
  if (!list.is_array()) return out;
  for (const auto& k : list)
    if (k.is_string()) out += (out.empty() ? "" : ", ") + k.get<std::string>();
  return out;
}

// ConfigVersionCreated, SecretsVersionCreated: "v3: set A, B; unset C".
std::string version_detail(const Json& d) {
  std::string out = "v" + std::to_string(whole(d, "version"));
  const auto set = joined(d.contains("set") ? d["set"] : Json()), unset = joined(d.contains("unset") ? d["unset"] : Json());
  if (!set.empty()) out += ": set " + set;
  if (!unset.empty()) out += (set.empty() ? ": unset " : "; unset ") + unset;
  return out;
}

// ProcessScaled: "web=3, worker 512 MiB 0.5 cpu".
std::string scale_detail(const Json& d) {
  std::string out;
  const auto changes = d.contains("changes") ? d["changes"] : Json();
  if (!changes.is_object()) return out;
  for (const auto& [process, c] : changes.items()) {
    std::string one = process;
    if (!c.is_object()) continue;
    if (c.contains("count")) one += "=" + std::to_string(whole(c, "count"));
    if (c.contains("memory_mib")) one += fmt::format(" {} MiB", whole(c, "memory_mib"));
    if (c.contains("cpu")) one += fmt::format(" {:g} cpu", num(c, "cpu"));
    out += (out.empty() ? "" : ", ") + one;
  }
  return out;
}

std::string address_detail(const Json& d) {
  std::string out = str(d, "family") + " " + str(d, "address");
  if (const auto cents = whole(d, "price_cents_month"); cents > 0)
    out += fmt::format(" (${}.{:02}/month)", cents / 100, cents % 100);
  return out;
}

}  // namespace

std::string event_detail(const Json& e) {
  const auto type = e.value("type", "");
  const auto& d = e.contains("data") && e["data"].is_object() ? e["data"] : Json::object();
  if (type == "EnvReleaseSet") {
    auto out = "v" + std::to_string(whole(d, "number"));
    const auto reason = str(d, "reason");
    return reason.empty() ? out : out + " (" + reason + ")";
  }
  if (type == "ReleaseCreated") {
    const auto ref = d.contains("image") && d["image"].is_object() ? str(d["image"], "ref") : "";
    return "v" + std::to_string(whole(d, "number")) + (ref.empty() ? "" : ": " + ref);
  }
  if (type == "ConfigVersionCreated" || type == "SecretsVersionCreated") return version_detail(d);
  if (type == "ProcessScaled") return scale_detail(d);
  if (type == "EnvRestartRequested") {  // "restart web (2), worker (1)": each process and its instances
    std::string out;
    const auto counts = d.contains("instances") && d["instances"].is_object() ? d["instances"] : Json::object();
    for (const auto& [process, n] : counts.items())
      out += fmt::format("{}{} ({})", out.empty() ? "restart " : ", ", process, n.is_number_integer() ? n.get<int>() : 0);
    return out;
  }
  if (type == "TokenIssued") {  // "CI deploys, expires 2027-01-06T17:00:20Z"
    const auto expires = str(d, "expires_at");
    return str(d, "description") + (expires.empty() ? ", never expires" : ", expires " + expires.substr(0, 19) + "Z");
  }
  if (type == "TokenRevoked") return str(d, "revoked_by") == "operator" ? "by an operator (platformd token revoke)" : "";
  if (type == "IpAllocated" || type == "IpReleased") return address_detail(d);
  if (type == "EndpointCreated") {
    auto out = fmt::format("{}: tcp {} → {}:{}", str(d, "name"), whole(d, "port"), str(d, "process"),
                           whole(d, "internal_port"));
    return str(d, "proxy_protocol").empty() ? out : out + ", PROXY " + str(d, "proxy_protocol");
  }
  if (type == "EndpointDeleted") return fmt::format("{}: tcp {}", str(d, "name"), whole(d, "port"));
  auto reason = str(d, "reason");
  if (type == "InstancePlaced" && !str(d, "host_name").empty())
    return "on host " + str(d, "host_name") + (reason.empty() ? "" : ": " + reason);
  if (!reason.empty()) return reason;
  return str(d, "description");
}

}  // namespace platform::cli
