#pragma once
// Applies sql/migrations in order, each once, in its own transaction, checksummed.
#include <string>
#include <vector>

namespace pqxx {
class transaction_base;
}

namespace platform::db {

struct MigrationResult {
  std::vector<std::string> applied;  // newly applied, in order
  std::vector<std::string> present;  // already applied before
  // Applied to the database but not in this binary: a newer platformd migrated it. This one still runs
  // (a rolling upgrade has old and new side by side; migrations only add), but it should be upgraded.
  std::vector<std::string> unknown;
};

// The schema as this binary and the database see it, for GET /v1/version.
struct SchemaState {
  std::string binary;    // the newest migration this binary carries, "0023_token_expiry"
  std::string database;  // the newest applied to the database ("" before the first migrate)
  std::vector<std::string> pending;  // in this binary, not yet applied
  std::vector<std::string> unknown;  // applied, not in this binary (a newer platformd's)
};

// Throws PlatformError(precondition_failed) when an applied migration's text changed.
MigrationResult migrate(const std::string& conninfo);

SchemaState schema_state(pqxx::transaction_base& tx);

}  // namespace platform::db
