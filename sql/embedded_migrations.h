#pragma once
#include <string>
#include <vector>

namespace platform::sql {

struct EmbeddedMigration {
  std::string name;  // e.g. "0001_event_log.sql"; the order of application
  std::string text;
};

// Every file of sql/migrations, sorted by name.
const std::vector<EmbeddedMigration>& embedded_migrations();

}  // namespace platform::sql
