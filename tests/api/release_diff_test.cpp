// release_diff: what a deploy changes, by kind, with field-level process changes and no values.
#include <gtest/gtest.h>

#include "api/release_diff.h"
#include "engine/manifest/manifest.h"

using namespace platform;

namespace {

Json view(const std::string& digest, const std::string& toml, Json config = Json::object(),
          Json secrets = Json::object()) {
  auto parsed = manifest::parse(toml);
  EXPECT_TRUE(parsed.manifest.has_value()) << (parsed.diagnostics.empty() ? "" : parsed.diagnostics[0].format());
  return {{"image", {{"ref", "r/app:" + digest}, {"digest", digest}}},
          {"manifest", manifest::to_json(*parsed.manifest)},
          {"config", {{"version", 1}, {"keys", config}}},
          {"secrets", {{"version", 1}, {"keys", secrets}}}};
}

const std::string kBase = R"(schema_version = 1
[app]
name = "a"
[processes.web]
count = 2
[processes.worker]
[[endpoints]]
name = "tcp"
port = 7000
internal_port = 8080
process = "web"
)";

std::string find(const Json& diff, const std::string& kind, const std::string& action) {
  for (const auto& d : diff)
    if (d["kind"] == kind && d["action"] == action) return d["summary"];
  return "";
}

}  // namespace

TEST(ReleaseDiff, AFirstReleaseAddsEverything) {
  auto d = api::diff_releases(nullptr, view("sha256:a", kBase, {{"K", 1}}, {{"S", "hmac-sha256:x"}}));
  EXPECT_NE(find(d, "image", "add"), "");
  EXPECT_NE(find(d, "process", "add"), "");
  EXPECT_NE(find(d, "endpoint", "add"), "");
  EXPECT_EQ(find(d, "config", "add"), "add config K (value redacted)");
  EXPECT_EQ(find(d, "secret", "add"), "add secret S (value redacted)");
}

TEST(ReleaseDiff, EqualViewsHaveNoDifferences) {
  EXPECT_TRUE(api::diff_releases(view("sha256:a", kBase), view("sha256:a", kBase)).empty());
}

TEST(ReleaseDiff, ChangesAreNamedByKindWithFieldsAndWithoutValues) {
  auto changed = kBase;
  changed.replace(changed.find("count = 2"), 9, "count = 1\nmemory = \"512MiB\"");
  changed.replace(changed.find("[processes.worker]\n"), 19, "");
  changed += "[[volumes]]\nname = \"data\"\nsize = \"1GiB\"\nmount = \"/data\"\nprocess = \"web\"\n";
  auto d = api::diff_releases(view("sha256:a", kBase, {{"K", 1}, {"GONE", 1}}, {{"S", "hmac-sha256:x"}}),
                              view("sha256:b", changed, {{"K", 2}}, {{"S", "hmac-sha256:y"}}));
  EXPECT_NE(find(d, "image", "change").find("sha256:a"), std::string::npos);
  EXPECT_EQ(find(d, "process", "change"), "change process web: count 2 → 1, memory 256MiB → 512MiB");
  EXPECT_EQ(find(d, "process", "remove"), "remove process worker");
  EXPECT_NE(find(d, "volume", "add").find("1GiB at /data"), std::string::npos);
  EXPECT_EQ(find(d, "config", "change"), "change config K (value redacted)");
  EXPECT_EQ(find(d, "config", "remove"), "remove config GONE");
  EXPECT_EQ(find(d, "secret", "change"), "change secret S (value redacted)");
  EXPECT_EQ(d.dump().find("hmac-sha256"), std::string::npos);
}
