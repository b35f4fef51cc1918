#pragma once
// The per-instance shim (`platform-agent shim`): creates and starts one runc container from the bundle in
// `dir`, stays its parent (a child subreaper) until its process ends, then records how it ended and
// deletes the container. Detached from the agent, so the agent may restart meanwhile.
//
// Files in `dir`, each written by rename (readers never see half a file):
//   shim.pid    the shim's pid
//   shim.state  "running <container pid>", "failed <why>", then "exited"
//   exit.json   {"exit_code", "signal", "oom", "at"}
#include <string>

namespace platform::agent {

struct ShimOptions {
  std::string dir, id, runc, root;  // bundle folder, container id, runc binary, runc --root
};

// Returns the shim's exit code (0 once the exit status is recorded).
int run_shim(const ShimOptions& options);

}  // namespace platform::agent
