#pragma once
#include <string>
#include <string_view>

namespace platform {

std::string sha256_hex(std::string_view data);
// A URL-safe random secret of `bytes` random bytes (hex encoded).
std::string random_secret(int bytes = 32);

}  // namespace platform
