#pragma once
// Internal to the manifest parser: reads one TOML table strictly. Every key it is asked for counts as
// known; finish() reports the rest as unknown (with a did-you-mean) or as a v1-deferred feature.
// Only parse.cpp and reader.cpp include this (toml++ is heavy).
#include "engine/manifest/toml.h"

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/manifest/manifest.h"

namespace platform::manifest::detail {

struct Deferred {
  std::string_view feature;  // "HTTP host routing"
  std::string_view instead;  // what to do in v1
};

// The deferred features, named once (docs/manifest.md lists them).
extern const Deferred kHttpRouting, kManagedTls, kAutoscaling, kDeployStrategies, kManagedDatabases, kMultiRegion,
    kUdp;

class Diagnostics {
 public:
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}
  void error(const toml::source_region& at, std::string key, std::string message, std::string hint = {});
  void deferred(const toml::source_region& at, std::string key, const Deferred& what);
  std::vector<Diagnostic> take() { return std::move(list_); }
  bool empty() const { return list_.empty(); }

 private:
  std::string file_;
  std::vector<Diagnostic> list_;
};

class TableReader {
 public:
  // `path` is the table's dotted name ("" for the root, "processes.web", "endpoints[0]").
  TableReader(const toml::table& table, std::string path, Diagnostics& diags)
      : t_(table), path_(std::move(path)), d_(diags) {}

  std::string key_path(std::string_view key) const;
  const toml::table& table() const { return t_; }

  // Marks `key` as known; nullptr when absent.
  const toml::node* node(std::string_view key);
  // Recognised keys of a v1-deferred feature: present ones are reported with exit 10.
  void deferred(std::initializer_list<std::string_view> keys, const Deferred& what);

  // Typed getters report a wrong type or range at the value and return nullopt; with required = true a
  // missing key is reported at the table.
  std::optional<std::string> string(std::string_view key, bool required = false);
  std::optional<std::string> choice(std::string_view key, std::initializer_list<std::string_view> allowed,
                                    bool required = false);
  std::optional<std::int64_t> integer(std::string_view key, std::int64_t lo, std::int64_t hi, bool required = false);
  std::optional<double> number(std::string_view key, double lo, double hi);
  std::optional<bool> boolean(std::string_view key);
  std::optional<std::vector<std::string>> strings(std::string_view key, bool required = false);
  std::optional<std::int64_t> duration_ms(std::string_view key, std::int64_t lo_ms, std::int64_t hi_ms);
  std::optional<std::int64_t> size_mib(std::string_view key, std::int64_t lo, std::int64_t hi, bool required = false);
  const toml::table* subtable(std::string_view key);
  const toml::array* array_of_tables(std::string_view key);

  // Reports every key never asked for. `hint` says what the table may hold.
  void finish(std::string_view hint = {});

  Diagnostics& diagnostics() { return d_; }

 private:
  std::string where() const;  // "in [processes.web]", "in endpoints[0]"
  void wrong_type(std::string_view key, const toml::node& n, std::string_view expected);
  void missing(std::string_view key, std::string_view expected);

  const toml::table& t_;
  std::string path_;
  Diagnostics& d_;
  std::vector<std::string_view> known_;
  std::vector<std::pair<std::string_view, const Deferred*>> deferred_;
};

}  // namespace platform::manifest::detail
