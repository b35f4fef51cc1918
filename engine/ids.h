#pragma once
// Stable resource IDs: "<kind>_<26 chars of lowercase Crockford base32 of a UUIDv7>", e.g. app_01jd....
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace platform {

using Uuid = std::array<std::uint8_t, 16>;

Uuid new_uuid_v7();
// A UUID (version 8 layout) derived from a name: the same name always gives the same UUID.
Uuid uuid_from_name(std::string_view name);
std::string uuid_to_string(const Uuid& u);  // canonical 8-4-4-4-12 form
bool is_uuid(std::string_view s);           // that form, hex digits in either case

std::string base32_encode(const Uuid& u);  // 26 characters, sorts like the UUID
std::optional<Uuid> base32_decode(std::string_view s);

// A fresh ID for a resource kind ("org", "prj", "app", "env", "op", "req", "tok", "usr", ...).
std::string new_id(std::string_view prefix);
// A deterministic ID of the same shape, derived from a name.
std::string id_from_name(std::string_view prefix, std::string_view name);

// True for "<prefix>_<26 base32 chars>" with a known prefix; fills prefix_out when given.
bool looks_like_id(std::string_view s, std::string* prefix_out = nullptr);

}  // namespace platform
