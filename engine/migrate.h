#pragma once
// Applies sql/migrations in order, each once, in its own transaction, checksummed.
#include <string>
#include <vector>

namespace platform::db {

struct MigrationResult {
  std::vector<std::string> applied;  // newly applied, in order
  std::vector<std::string> present;  // already applied before
};

// Throws PlatformError(precondition_failed) when an applied migration's text changed.
MigrationResult migrate(const std::string& conninfo);

}  // namespace platform::db
