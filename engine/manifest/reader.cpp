#include "engine/manifest/reader.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "engine/duration.h"
#include "engine/suggest.h"

namespace platform::manifest::detail {

const Deferred kHttpRouting{"HTTP host routing",
                            "declare an SNI route on 443 ([[routes]] hostnames = [...]) or a dedicated endpoint, "
                            "and terminate TLS in your app"};
const Deferred kManagedTls{"managed TLS at the edge",
                           "the edge passes TLS through untouched: terminate TLS in your app and route by SNI "
                           "with [[routes]]"};
const Deferred kAutoscaling{"autoscaling", "set count per process and change it with `platform scale web=3`"};
const Deferred kDeployStrategies{"canary and blue-green deploys",
                                 "every deploy starts new instances, waits until they are healthy, then stops "
                                 "the old ones; stage a rollout by deploying to another env first"};
const Deferred kManagedDatabases{"managed databases",
                                 "run your database yourself or at a provider and pass its URL as a secret "
                                 "([secrets] required = [\"DATABASE_URL\"], then `platform secrets set`)"};
const Deferred kMultiRegion{"multi-region", "an app runs in the platform's one region: remove the region settings"};
const Deferred kUdp{"UDP endpoints", "expose the service over TCP (protocol = \"tcp\")"};

namespace {
int to_int(std::uint32_t v) { return static_cast<int>(v); }

std::string format_number(double v) { return fmt::format("{}", v); }

std::string_view type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time: return "a date or time";
    default: return "nothing";
  }
}
}  // namespace

void Diagnostics::error(const toml::source_region& at, std::string key, std::string message, std::string hint) {
  list_.push_back({file_, to_int(at.begin.line), to_int(at.begin.column), std::move(key), std::move(message),
                   std::move(hint), false});
}

void Diagnostics::deferred(const toml::source_region& at, std::string key, const Deferred& what) {
  list_.push_back({file_, to_int(at.begin.line), to_int(at.begin.column), key,
                   "not in v1: " + std::string(what.feature) + " (\"" + key + "\")",
                   "Instead: " + std::string(what.instead) + ".", true});
}

std::string TableReader::key_path(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

const toml::node* TableReader::node(std::string_view key) {
  known_.push_back(key);
  return t_.get(key);
}

void TableReader::deferred(std::initializer_list<std::string_view> keys, const Deferred& what) {
  for (auto k : keys) deferred_.emplace_back(k, &what);
}

void TableReader::wrong_type(std::string_view key, const toml::node& n, std::string_view expected) {
  d_.error(n.source(), key_path(key),
           key_path(key) + " must be " + std::string(expected) + ", not " + std::string(type_name(n)));
}

std::string TableReader::where() const {
  if (path_.empty()) return "at the top level";
  if (path_.find('[') != std::string::npos) return "in " + path_;  // an item of [[endpoints]] ...
  return "in [" + path_ + "]";
}

void TableReader::missing(std::string_view key, std::string_view expected) {
  d_.error(t_.source(), key_path(key), "missing " + std::string(key) + " (" + std::string(expected) + ") " + where(),
           "Add " + std::string(key) + " = ... " + where() + ".");
}

std::optional<std::string> TableReader::string(std::string_view key, bool required) {
  const auto* n = node(key);
  if (!n) {
    if (required) missing(key, "a string");
    return std::nullopt;
  }
  if (auto s = n->value<std::string>(); s && n->is_string()) return s;
  wrong_type(key, *n, "a string");
  return std::nullopt;
}

std::optional<std::string> TableReader::choice(std::string_view key, std::initializer_list<std::string_view> allowed,
                                               bool required) {
  auto s = string(key, required);
  if (!s) return s;
  if (std::find(allowed.begin(), allowed.end(), *s) != allowed.end()) return s;
  const auto& at = t_.get(key)->source();
  if (allowed.size() == 1) {
    d_.error(at, key_path(key), key_path(key) + " must be \"" + std::string(*allowed.begin()) + "\", not \"" + s->substr(0, 60) + "\"");
    return std::nullopt;
  }
  std::string list;
  for (auto a : allowed) list += (list.empty() ? "\"" : ", \"") + std::string(a) + "\"";
  auto best = did_you_mean(*s, std::vector<std::string_view>(allowed));
  d_.error(at, key_path(key),
           key_path(key) + " = \"" + s->substr(0, 60) + "\" is not one of " + list +
               (best.empty() ? "" : " (did you mean \"" + best + "\"?)"));
  return std::nullopt;
}

std::optional<std::int64_t> TableReader::integer(std::string_view key, std::int64_t lo, std::int64_t hi, bool required) {
  const auto* n = node(key);
  if (!n) {
    if (required) missing(key, "an integer");
    return std::nullopt;
  }
  if (!n->is_integer()) {
    wrong_type(key, *n, "an integer");
    return std::nullopt;
  }
  auto v = n->as_integer()->get();
  if (v < lo || v > hi) {
    d_.error(n->source(), key_path(key),
             key_path(key) + " = " + std::to_string(v) + " is out of range " + std::to_string(lo) + ".." +
                 std::to_string(hi));
    return std::nullopt;
  }
  return v;
}

std::optional<double> TableReader::number(std::string_view key, double lo, double hi) {
  const auto* n = node(key);
  if (!n) return std::nullopt;
  double v = 0;
  if (n->is_integer()) {
    v = static_cast<double>(n->as_integer()->get());
  } else if (n->is_floating_point()) {
    v = n->as_floating_point()->get();
  } else {
    wrong_type(key, *n, "a number");
    return std::nullopt;
  }
  if (!std::isfinite(v) || v < lo || v > hi) {
    d_.error(n->source(), key_path(key), key_path(key) + " is out of range " + format_number(lo) + ".." + format_number(hi));
    return std::nullopt;
  }
  return v;
}

std::optional<bool> TableReader::boolean(std::string_view key) {
  const auto* n = node(key);
  if (!n) return std::nullopt;
  if (n->is_boolean()) return n->as_boolean()->get();
  wrong_type(key, *n, "true or false");
  return std::nullopt;
}

std::optional<std::vector<std::string>> TableReader::strings(std::string_view key, bool required) {
  const auto* n = node(key);
  if (!n) {
    if (required) missing(key, "an array of strings");
    return std::nullopt;
  }
  const auto* arr = n->as_array();
  if (!arr) {
    wrong_type(key, *n, "an array of strings");
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (const auto& item : *arr) {
    if (!item.is_string()) {
      d_.error(item.source(), key_path(key),
               key_path(key) + " must hold only strings, not " + std::string(type_name(item)));
      return std::nullopt;
    }
    out.push_back(*item.value<std::string>());
  }
  return out;
}

std::optional<std::int64_t> TableReader::duration_ms(std::string_view key, std::int64_t lo_ms, std::int64_t hi_ms) {
  const auto* n = node(key);
  if (!n) return std::nullopt;
  if (!n->is_string()) {
    wrong_type(key, *n, "a duration string such as \"10s\" or \"500ms\"");
    return std::nullopt;
  }
  auto d = parse_duration(*n->value<std::string>());
  if (!d || d->count() < lo_ms || d->count() > hi_ms) {
    d_.error(n->source(), key_path(key),
             key_path(key) + " = \"" + n->value<std::string>()->substr(0, 40) + "\" is not a duration between " +
                 format_duration(std::chrono::milliseconds(lo_ms)) + " and " +
                 format_duration(std::chrono::milliseconds(hi_ms)),
             "Write durations like \"500ms\", \"10s\", \"5m\" or \"1h30m\".");
    return std::nullopt;
  }
  return d->count();
}

std::optional<std::int64_t> TableReader::size_mib(std::string_view key, std::int64_t lo, std::int64_t hi,
                                                  bool required) {
  const auto* n = node(key);
  if (!n) {
    if (required) missing(key, "a size such as \"512MiB\" or \"10GiB\"");
    return std::nullopt;
  }
  std::optional<std::int64_t> v;
  if (n->is_integer()) v = n->as_integer()->get();
  else if (n->is_string()) v = parse_size_mib(*n->value<std::string>());
  if (!v || *v < lo || *v > hi) {
    std::string hint = "Write sizes like \"256MiB\", \"2GiB\" or an integer number of MiB.";
    if (n->is_string()) {  // "512MB", "1G": sizes are binary units here
      auto s = *n->value<std::string>();
      for (auto [wrong, right] : {std::pair{"MB", "MiB"}, std::pair{"GB", "GiB"}, std::pair{"TB", "TiB"},
                                  std::pair{"M", "MiB"}, std::pair{"G", "GiB"}, std::pair{"Mi", "MiB"},
                                  std::pair{"Gi", "GiB"}})
        if (s.size() > std::strlen(wrong) && s.ends_with(wrong) && std::isdigit(static_cast<unsigned char>(s[s.size() - std::strlen(wrong) - 1]))) {
          hint = "Did you mean \"" + s.substr(0, s.size() - std::strlen(wrong)) + right + "\"? " + hint;
          break;
        }
    }
    d_.error(n->source(), key_path(key),
             key_path(key) + " must be a size between " + format_size_mib(lo) + " and " + format_size_mib(hi), hint);
    return std::nullopt;
  }
  return v;
}

const toml::table* TableReader::subtable(std::string_view key) {
  const auto* n = node(key);
  if (!n) return nullptr;
  if (const auto* t = n->as_table()) return t;
  wrong_type(key, *n, "a table ([" + key_path(key) + "])");
  return nullptr;
}

const toml::array* TableReader::array_of_tables(std::string_view key) {
  const auto* n = node(key);
  if (!n) return nullptr;
  const auto* arr = n->as_array();
  if (!arr || (!arr->empty() && !arr->is_array_of_tables())) {
    wrong_type(key, *n, "an array of tables ([[" + key_path(key) + "]])");
    return nullptr;
  }
  return arr;
}

void TableReader::finish(std::string_view hint) {
  for (const auto& [k, v] : t_) {
    auto name = k.str();
    if (std::find(known_.begin(), known_.end(), name) != known_.end()) continue;
    auto def = std::find_if(deferred_.begin(), deferred_.end(), [&](const auto& p) { return p.first == name; });
    if (def != deferred_.end()) {
      d_.deferred(k.source(), key_path(name), *def->second);
      continue;
    }
    auto best = did_you_mean(name, known_);
    d_.error(k.source(), key_path(name),
             "unknown key \"" + std::string(name) + "\" " + where() +
                 (best.empty() ? "" : " (did you mean \"" + best + "\"?)"),
             std::string(hint));
  }
}

}  // namespace platform::manifest::detail
