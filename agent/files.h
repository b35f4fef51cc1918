#pragma once
// Small files the agent keeps in its state folder (shim state, exit status, image metadata).
#include <chrono>
#include <filesystem>
#include <string>

namespace platform::agent {

// The whole file; "" when it does not exist (yet).
std::string read_text(const std::filesystem::path& p);
// Through p + ".tmp" and one rename, so a reader sees the old file or the new one, never half of one.
// Throws PlatformError(internal) when the disk refuses.
void write_atomically(const std::filesystem::path& p, const std::string& content);

// The current UTC time as the API writes it: "2026-11-22T03:04:58.458585Z".
std::string utc_now();
std::string utc_time(std::chrono::system_clock::time_point t);

}  // namespace platform::agent
