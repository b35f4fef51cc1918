#pragma once
// What an event says, in a few words, for the DETAIL column of `platform events`: the release a
// deploy or rollback set, the keys a config version changed, the port an endpoint opened, why an
// instance stopped. The JSON output keeps the whole event; this is only for people reading a table.
#include "engine/json.h"

namespace platform::cli {

// "" when the event has nothing to add to its type and resource.
std::string event_detail(const Json& event);

}  // namespace platform::cli
