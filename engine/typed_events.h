#pragma once
// Typed event payloads with schema versions. A payload struct states the schema version it writes and
// converts to and from JSON. encode() stamps that version on the event; decode() reads every version
// up to it (an older one is upgraded by the struct's from_json(data, version)) and refuses a newer
// one: that event was written by a newer platformd, and folding it with an older schema would drop
// what it says. A refused event stops its reader with an error naming the event, never a skip.
#include <concepts>
#include <string>

#include "engine/event_store.h"
#include "engine/ids.h"

namespace platform::events {

template <class T>
concept Payload = requires(const T& p, const Json& j, int version) {
  { T::kSchemaVersion } -> std::convertible_to<int>;
  { p.to_json() } -> std::same_as<Json>;
  { T::from_json(j, version) } -> std::same_as<T>;
};

template <Payload T>
NewEvent encode(std::string type, const T& payload, Json metadata) {
  return {uuid_to_string(new_uuid_v7()), std::move(type), T::kSchemaVersion, payload.to_json(), std::move(metadata)};
}

// Throws PlatformError(internal) naming the event, its position and what is wrong.
[[noreturn]] void refuse_payload(const Recorded& e, int supported, const std::string& why);

template <Payload T>
T decode(const Recorded& e) {
  if (e.schema_version < 1 || e.schema_version > T::kSchemaVersion)
    refuse_payload(e, T::kSchemaVersion, "its schema version " + std::to_string(e.schema_version) + " is unknown here");
  try {
    return T::from_json(e.data, e.schema_version);
  } catch (const Json::exception& x) {
    refuse_payload(e, T::kSchemaVersion, x.what());
  }
}

}  // namespace platform::events
