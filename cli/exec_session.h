#pragma once
// `platform exec -i` / `-it` (docs/instances.md#sessions): an interactive session in a running instance.
#include <string>

#include "cli/cli.h"
#include "engine/json.h"

namespace platform::cli {

// Opens a session at `env_path` for instance `instance` ({command, env} in `body`; `tty` asks for a
// terminal, which needs one on our stdin), relays our stdin to it and its output to our stdout until its
// command exits, and throws ExitWith its exit status (PlatformError when it ended without one).
[[noreturn]] void run_exec_session(const Globals& g, const Session& s, const std::string& instance, Json body, bool tty);

}  // namespace platform::cli
