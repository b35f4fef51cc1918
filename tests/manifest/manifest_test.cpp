// platform.toml v1: the corpus of valid and invalid manifests with their exact diagnostics and exit
// codes, the normalised form and its round trip, env overrides, sizes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/manifest/manifest.h"

using namespace platform;
namespace fs = std::filesystem;

namespace {
const fs::path kCorpus = fs::path(MANIFEST_CORPUS);

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<fs::path> files(const fs::path& dir, const std::string& ext) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ext) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// The same text the CLI prints for each problem: "file:line:col: message" and the hint indented.
std::string render(const manifest::ParseResult& r) {
  std::string out = "exit " + std::to_string(r.exit_code()) + "\n";
  for (const auto& d : r.diagnostics) out += d.format() + "\n" + (d.hint.empty() ? "" : "    " + d.hint + "\n");
  return out;
}
}  // namespace

TEST(Manifest, EveryValidManifestParsesAndRoundTripsThroughExplain) {
  auto valid = files(kCorpus / "valid", ".toml");
  ASSERT_GE(valid.size(), 4u);
  for (const auto& f : valid) {
    auto r = manifest::parse(slurp(f), f.filename().string());
    ASSERT_TRUE(r.manifest) << f << "\n" << render(r);
    EXPECT_EQ(r.exit_code(), 0);
    // explain's TOML is itself a valid manifest with the same normalised content.
    auto text = manifest::to_toml(*r.manifest);
    auto again = manifest::parse(text, "explained.toml");
    ASSERT_TRUE(again.manifest) << f << "\n" << text << "\n" << render(again);
    EXPECT_EQ(manifest::to_json(*again.manifest), manifest::to_json(*r.manifest)) << f;
  }
}

TEST(Manifest, EveryInvalidManifestGivesExactlyItsExpectedDiagnostics) {
  auto invalid = files(kCorpus / "invalid", ".toml");
  ASSERT_GE(invalid.size(), 8u);
  for (const auto& f : invalid) {
    auto expected_file = fs::path(f).replace_extension(".expected");
    ASSERT_TRUE(fs::exists(expected_file)) << "no " << expected_file;
    auto r = manifest::parse(slurp(f), f.filename().string());
    EXPECT_FALSE(r.manifest) << f;
    EXPECT_EQ(render(r), slurp(expected_file)) << f;
  }
}

TEST(Manifest, DefaultsAreFilledIn) {
  auto r = manifest::parse(slurp(kCorpus / "valid" / "minimal.toml"));
  ASSERT_TRUE(r.manifest);
  auto j = manifest::to_json(*r.manifest);
  const auto& web = j["processes"]["web"];
  EXPECT_EQ(web["cpu"], 0.25);
  EXPECT_EQ(web["memory"], "256MiB");
  EXPECT_EQ(web["count"], 1);
  EXPECT_FALSE(web.contains("command"));  // the image's entrypoint and cmd
  EXPECT_EQ(web["restart"], (Json{{"policy", "always"}, {"max_attempts", 10}, {"backoff", "1s"}, {"max_backoff", "5m"}}));
  EXPECT_FALSE(web.contains("health"));
}

TEST(Manifest, HealthPortDefaultsToTheProcessesFirstPortAndStringCommandsRunInAShell) {
  auto r = manifest::parse(slurp(kCorpus / "valid" / "full.toml"));
  ASSERT_TRUE(r.manifest);
  const auto* web = r.manifest->process("web");
  ASSERT_TRUE(web && web->health);
  EXPECT_EQ(web->health->port, 8443);  // its route's internal port
  EXPECT_EQ(r.manifest->process("worker")->command,
            (std::vector<std::string>{"/bin/sh", "-c", "./worker --queue default"}));
  EXPECT_EQ(r.manifest->endpoints.at(0).name, "worker-5432");
}

TEST(Manifest, EnvOverridesChangeOnlyCountsAndSizes) {
  auto r = manifest::parse(slurp(kCorpus / "valid" / "checks_and_restarts.toml"));
  ASSERT_TRUE(r.manifest);
  auto prod = manifest::for_env(*r.manifest, "production");
  EXPECT_EQ(prod.process("api")->count, 6);
  EXPECT_EQ(prod.process("api")->cpu, 4);
  EXPECT_EQ(prod.process("api")->memory_mib, 4096);
  EXPECT_TRUE(prod.envs.empty());
  auto other = manifest::for_env(*r.manifest, "no-such-env");
  EXPECT_EQ(other.process("api")->count, 3);
  EXPECT_EQ(manifest::to_json(manifest::for_env(*r.manifest, "staging")), manifest::to_json(other));
}

// stop_timeout: SIGTERM to SIGKILL, 1s to 1h; left out of the normalised form when not set (the agent's
// 10 s), so releases made before it existed keep their hash.
TEST(Manifest, StopTimeoutIsADurationAndOnlyInTheNormalisedFormWhenSet) {
  const std::string head = "schema_version = 1\n[app]\nname = \"x\"\n[processes.web]\n";
  auto set = manifest::parse(head + "stop_timeout = \"1m30s\"\n");
  ASSERT_TRUE(set.manifest) << render(set);
  EXPECT_EQ(set.manifest->process("web")->stop_timeout_ms, 90'000);
  const auto j = manifest::to_json(*set.manifest);
  EXPECT_EQ(j["processes"]["web"]["stop_timeout"], "1m30s");
  EXPECT_EQ(manifest::process_from_json("web", j["processes"]["web"]).stop_timeout_ms, 90'000);
  auto unset = manifest::parse(head);
  ASSERT_TRUE(unset.manifest);
  EXPECT_FALSE(unset.manifest->process("web")->stop_timeout_ms);
  EXPECT_FALSE(manifest::to_json(*unset.manifest)["processes"]["web"].contains("stop_timeout"));
  for (const auto* bad : {"\"0s\"", "\"2h\"", "\"soon\"", "30"}) {
    auto r = manifest::parse(head + "stop_timeout = " + bad + "\n", "p.toml");
    EXPECT_FALSE(r.manifest) << bad;
    EXPECT_NE(render(r).find("processes.web.stop_timeout"), std::string::npos) << bad << render(r);
  }
}

TEST(Manifest, TheNormalisedFormIsStable) {
  // Key order, whitespace and comments do not change the normalised JSON (a release hashes it).
  auto a = manifest::parse("schema_version = 1\n[app]\nname = \"x\"\n[processes.web]\ncount = 2\nmemory = \"1GiB\"\n");
  auto b = manifest::parse("schema_version = 1 # comment\n[processes.web]\nmemory = 1024\ncount = 2\n\n[app]\nname = \"x\"\n");
  ASSERT_TRUE(a.manifest && b.manifest);
  EXPECT_EQ(manifest::to_json(*a.manifest).dump(), manifest::to_json(*b.manifest).dump());
}

TEST(Manifest, Sizes) {
  EXPECT_EQ(manifest::parse_size_mib("512MiB"), 512);
  EXPECT_EQ(manifest::parse_size_mib("1.5GiB"), 1536);
  EXPECT_EQ(manifest::parse_size_mib("2TiB"), 2 * 1024 * 1024);
  EXPECT_EQ(manifest::parse_size_mib("2048KiB"), 2);
  EXPECT_EQ(manifest::parse_size_mib("300"), 300);
  for (const char* bad : {"", "MiB", "512MB", "1G", "-1MiB", "1.3MiB", "1e3MiB", "0x10", "nan", "inf", "512 MiB"})
    EXPECT_FALSE(manifest::parse_size_mib(bad)) << bad;
  EXPECT_EQ(manifest::format_size_mib(1536), "1536MiB");
  EXPECT_EQ(manifest::format_size_mib(2048), "2GiB");
}

TEST(Manifest, TheSchemaIsEmbeddedAndIsJson) {
  auto schema = Json::parse(manifest::json_schema());
  EXPECT_EQ(schema["properties"]["schema_version"]["const"], 1);
  EXPECT_EQ(std::string(manifest::json_schema()), slurp(fs::path(MANIFEST_SCHEMA)));
}
