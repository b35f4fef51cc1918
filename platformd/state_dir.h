#pragma once
// Where `platformd dev` keeps its state when neither --state nor PLATFORM_STATE says.
#include <string>

namespace platform::dev {

// /var/lib/platform/dev for root (root's home is closed to the "postgres" user PostgreSQL runs as), unless
// a cluster already lives in ~/.local/share/platform/dev; that folder for anyone else.
std::string default_state_dir();

}  // namespace platform::dev
