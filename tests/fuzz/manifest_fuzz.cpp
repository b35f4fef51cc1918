// platform.toml parse + validate on arbitrary bytes. Oracle: whatever parses must explain (to_toml) into
// a manifest that parses again to the same normalised JSON.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/manifest/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 64 * 1024) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = platform::manifest::parse(text, "fuzz.toml");
  for (const auto& d : r.diagnostics) (void)d.format();
  if (r.exit_code() == 0 && !r.manifest) __builtin_trap();
  if (!r.manifest) return 0;
  auto json = platform::manifest::to_json(*r.manifest);
  auto again = platform::manifest::parse(platform::manifest::to_toml(*r.manifest), "explained.toml");
  if (!again.manifest || platform::manifest::to_json(*again.manifest) != json) __builtin_trap();
  for (const auto& [env, _] : r.manifest->envs) (void)platform::manifest::to_json(platform::manifest::for_env(*r.manifest, env));
  return 0;
}
