// platform manifest validate|explain|schema: platform.toml checked and explained locally (no server).
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/cli.h"
#include "engine/manifest/manifest.h"

namespace platform::cli {
std::string read_manifest_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw PlatformError(ErrorCode::invalid_request, "cannot read manifest " + path,
                        path == "platform.toml" ? "Run this in your app's folder, or pass the manifest's path."
                                                : "Check the path.");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

manifest::Manifest load_manifest(const std::string& path) {
  auto result = manifest::parse(read_manifest_file(path), path);
  manifest::throw_if_invalid(result, path);
  return *result.manifest;
}

namespace {
std::string summary(const manifest::Manifest& m) {
  std::string procs;
  for (const auto& p : m.processes) procs += (procs.empty() ? "" : ", ") + p.name + " x" + std::to_string(p.count);
  std::string envs;
  for (const auto& [name, _] : m.envs) envs += (envs.empty() ? "" : ", ") + name;
  auto n = [](std::size_t k, const char* what) { return std::to_string(k) + " " + what + (k == 1 ? "" : "s"); };
  return "app " + m.app + "; processes " + procs + "; " + n(m.endpoints.size(), "endpoint") + ", " +
         n(m.routes.size(), "route") + ", " + n(m.volumes.size(), "volume") + "; config " +
         n(m.config.required.size() + m.config.optional.size(), "key") + ", secrets " +
         n(m.secrets.required.size() + m.secrets.optional.size(), "key") + (envs.empty() ? "" : "; envs " + envs);
}
}  // namespace

void add_manifest_commands(CLI::App& app, Globals& g) {
  auto path = std::make_shared<std::string>("platform.toml");
  auto* m = app.add_subcommand("manifest", "Check and explain platform.toml (locally, no server needed)");
  m->require_subcommand(1);

  auto* validate = m->add_subcommand("validate", "Check a manifest strictly: every problem with file:line:col");
  validate->add_option("path", *path, "Manifest file")->capture_default_str();
  validate->callback([&g, path] {
    auto man = load_manifest(*path);
    if (g.format() != Format::table)
      return print_json({{"valid", true}, {"file", *path}, {"manifest", manifest::to_json(man)}});
    std::cout << *path << ": valid (" << summary(man) << ")\n";
  });

  auto* explain = m->add_subcommand(
      "explain", "Print the manifest with every default filled in (--env applies that env's overrides)");
  explain->add_option("path", *path, "Manifest file")->capture_default_str();
  explain->callback([&g, path] {
    auto man = load_manifest(*path);
    if (!g.env.empty()) man = manifest::for_env(man, g.env);
    if (g.format() != Format::table)
      return print_json({{"file", *path}, {"env", g.env}, {"manifest", manifest::to_json(man)}});
    std::cout << "# " << *path << (g.env.empty() ? "" : " as deployed to env " + g.env)
              << ", every default filled in\n"
              << manifest::to_toml(man);
  });

  auto* schema = m->add_subcommand("schema", "Print the manifest's JSON Schema");
  schema->callback([] { std::cout << manifest::json_schema(); });
}

}  // namespace platform::cli
