// platform secrets list|set|unset|import: an env's secrets. Values go to the server base64-encoded and
// are never printed: receipts and lists show names, sizes and keyed digests (docs/secrets.md).
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "cli/cli.h"
#include "engine/crypto.h"
#include "engine/ids.h"

namespace platform::cli {
namespace {

std::string read_all(std::istream& in) { return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()}; }

std::string read_path(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw PlatformError(ErrorCode::invalid_request, "cannot read " + path, "Check the path after '@'.");
  return read_all(in);
}

// NAME=VALUE, NAME=@path (the file's bytes, exactly) or NAME=- (standard input, exactly).
std::pair<std::string, std::string> parse_assignment(const std::string& arg, bool& stdin_used) {
  auto eq = arg.find('=');
  if (eq == std::string::npos || eq == 0)
    // Not echoed: a mistyped argument may be the secret itself.
    throw PlatformError(ErrorCode::invalid_request, "an argument is not NAME=VALUE (its text is not shown)",
                        "e.g. platform secrets set API_KEY=@key.txt (or NAME=- to read standard input)");
  auto name = arg.substr(0, eq), value = arg.substr(eq + 1);
  if (value == "-") {
    if (stdin_used)
      throw PlatformError(ErrorCode::invalid_request, "only one secret can be read from standard input",
                          "Use NAME=@path for the others.");
    stdin_used = true;
    return {name, read_all(std::cin)};
  }
  if (!value.empty() && value[0] == '@') return {name, read_path(value.substr(1))};
  return {name, value};
}

// `import`: NAME=VALUE lines; blank lines and lines starting with '#' are skipped; a value may be quoted
// with '...' (taken as is) or "..." (\n, \", \\ escapes). For values with newlines, prefer NAME=@path.
Json parse_import(const std::string& text, const std::string& source) {
  Json set = Json::object();
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    line = line.substr(first);
    if (line.rfind("export ", 0) == 0) line = line.substr(7);
    auto eq = line.find('=');
    if (eq == std::string::npos || eq == 0)
      throw PlatformError(ErrorCode::invalid_request, source + ":" + std::to_string(n) + ": not NAME=VALUE",
                          "Each line is NAME=VALUE; '#' starts a comment line.");
    auto name = line.substr(0, eq), value = line.substr(eq + 1);
    if (value.size() >= 2 && value.front() == '\'' && value.back() == '\'') {
      value = value.substr(1, value.size() - 2);
    } else if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      std::string out;
      for (std::size_t i = 1; i + 1 < value.size(); ++i) {
        if (value[i] == '\\' && i + 2 < value.size()) {
          char c = value[++i];
          out += c == 'n' ? '\n' : c;
        } else {
          out += value[i];
        }
      }
      value = out;
    }
    set[name] = base64_encode(value);
  }
  if (set.empty())
    throw PlatformError(ErrorCode::invalid_request, source + " holds no NAME=VALUE line", "");
  return set;
}

}  // namespace

void add_secrets_commands(CLI::App& app, Globals& g) {
  auto* sec = app.add_subcommand("secrets", "An env's secrets: set, list names and digests; values are never shown");
  sec->require_subcommand(1);

  auto* list = sec->add_subcommand("list", "Names, sizes, digests, the version that set each, who and when");
  list->callback([&g] {
    auto s = open_session(g);
    auto out = s.client().call("GET", s.env_path() + "/secrets");
    if (g.format() != Format::table) return print_json(out);
    std::vector<std::vector<std::string>> rows;
    for (const auto& x : out["secrets"])
      rows.push_back({x.value("name", ""), std::to_string(x.value("bytes", 0)), x.value("digest", ""),
                      std::to_string(x.value("version", 0)), x.value("set_by", ""), x.value("set_at", "")});
    print_table({"NAME", "BYTES", "DIGEST", "VERSION", "SET BY", "SET AT"}, rows);
    note(g, "secrets version " + std::to_string(out.value("version", 0)) + " of " + out.value("path", ""));
  });

  auto idem = std::make_shared<std::string>();
  auto key_of = [idem] { return idem->empty() ? new_id("idem") : *idem; };

  auto pairs = std::make_shared<std::vector<std::string>>();
  auto* set = sec->add_subcommand("set", "Set secrets: NAME=VALUE, NAME=@path (a file's bytes) or NAME=- (stdin)");
  set->add_option("pairs", *pairs, "NAME=VALUE | NAME=@path | NAME=- ...")->required();
  set->add_option("--idempotency-key", *idem, "Make a retried request safe");
  set->callback([&g, pairs, key_of] {
    Json values = Json::object();
    bool stdin_used = false;
    for (const auto& p : *pairs) {
      auto [name, value] = parse_assignment(p, stdin_used);
      values[name] = base64_encode(value);
    }
    auto s = open_session(g);
    print_receipt(g, s.client().call("PATCH", s.env_path() + "/secrets", Json{{"set", values}}, key_of()));
  });

  auto source = std::make_shared<std::string>();
  auto* import = sec->add_subcommand("import", "Set every NAME=VALUE line of a file (or - for stdin) as one version");
  import->add_option("file", *source, "File of NAME=VALUE lines, or -")->required();
  import->add_option("--idempotency-key", *idem, "Make a retried request safe");
  import->callback([&g, source, key_of] {
    auto text = *source == "-" ? read_all(std::cin) : read_path(*source);
    auto values = parse_import(text, *source == "-" ? "stdin" : *source);
    auto s = open_session(g);
    print_receipt(g, s.client().call("PATCH", s.env_path() + "/secrets", Json{{"set", values}}, key_of()));
  });

  auto names = std::make_shared<std::vector<std::string>>();
  auto* unset = sec->add_subcommand("unset", "Remove secrets: a new secrets version (names not set are ignored)");
  unset->add_option("names", *names, "NAME ...")->required();
  unset->add_option("--idempotency-key", *idem, "Make a retried request safe");
  unset->callback([&g, names, key_of] {
    auto s = open_session(g);
    print_receipt(g, s.client().call("PATCH", s.env_path() + "/secrets", Json{{"unset", *names}}, key_of()));
  });
}

}  // namespace platform::cli
