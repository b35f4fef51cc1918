#pragma once
// "Did you mean …?" for unknown names: the closest candidate within two edits.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace platform {

std::size_t edit_distance(std::string_view a, std::string_view b);

// The closest candidate at most two edits away (ties: the first), or "" when none is that close.
std::string did_you_mean(std::string_view word, const std::vector<std::string_view>& candidates);

}  // namespace platform
