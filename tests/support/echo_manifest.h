#pragma once
// The sample echo app's manifest as tests and benchmarks deploy it: `web` with an http check on /healthz
// probed every second (so an instance is seen healthy quickly), small sizes, and `extra` appended
// (more processes, restart policies, config keys).
#include <string>

namespace platform::harness {

inline std::string echo_manifest(int web_count, const std::string& extra = {}) {
  return "schema_version = 1\n[app]\nname = \"echo\"\n[processes.web]\ncpu = 0.1\nmemory = \"64MiB\"\ncount = " +
         std::to_string(web_count) +
         "\n[processes.web.health]\ntype = \"http\"\nport = 8080\npath = \"/healthz\"\ninterval = \"1s\"\n"
         "timeout = \"500ms\"\ngrace = \"20s\"\n" + extra;
}

}  // namespace platform::harness
