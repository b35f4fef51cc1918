#include "engine/migrate.h"

#include <algorithm>
#include <map>
#include <set>

#include "engine/crypto.h"
#include "engine/db.h"
#include "sql/embedded_migrations.h"

namespace platform::db {

MigrationResult migrate(const std::string& conninfo) {
  MigrationResult result;
  try {
    auto conn = connect(conninfo, "platformd-migrate");
    {
      pqxx::nontransaction tx(*conn);
      // Several platformd may start at once: one migrates, the others wait here.
      tx.exec("SELECT pg_advisory_lock(hashtextextended('platform:migrate', 0))");
      tx.exec(
          "CREATE TABLE IF NOT EXISTS schema_migrations ("
          " name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
    }
    std::map<std::string, std::string> applied;
    {
      pqxx::nontransaction tx(*conn);
      for (const auto& r : tx.exec("SELECT name, checksum FROM schema_migrations"))
        applied[r[0].as<std::string>()] = r[1].as<std::string>();
    }
    std::set<std::string> known;
    for (const auto& m : sql::embedded_migrations()) known.insert(m.name);
    for (const auto& [name, sum] : applied)
      if (!known.count(name)) result.unknown.push_back(name);
    for (const auto& m : sql::embedded_migrations()) {
      auto sum = sha256_hex(m.text);
      if (auto it = applied.find(m.name); it != applied.end()) {
        if (it->second != sum)
          throw PlatformError(ErrorCode::precondition_failed,
                              "migration " + m.name + " was changed after it was applied (checksum " +
                                  it->second.substr(0, 12) + " in the database, " + sum.substr(0, 12) +
                                  " in this binary)",
                              "Never edit an applied migration: restore its text and add a new migration instead.");
        result.present.push_back(m.name);
        continue;
      }
      pqxx::work tx(*conn);
      tx.exec(m.text);
      tx.exec_params("INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)", m.name, sum);
      tx.commit();
      result.applied.push_back(m.name);
    }
    pqxx::nontransaction tx(*conn);
    tx.exec("SELECT pg_advisory_unlock(hashtextextended('platform:migrate', 0))");
  } catch (const std::exception& e) {
    throw translate(e);
  }
  return result;
}

SchemaState schema_state(pqxx::transaction_base& tx) {
  SchemaState s;
  std::set<std::string> applied;
  for (const auto& r : tx.exec("SELECT name FROM schema_migrations")) applied.insert(r[0].as<std::string>());
  std::set<std::string> known;
  for (const auto& m : sql::embedded_migrations()) {
    known.insert(m.name);
    s.binary = std::max(s.binary, m.name);
    if (!applied.count(m.name)) s.pending.push_back(m.name);
  }
  for (const auto& name : applied) {
    s.database = std::max(s.database, name);
    if (!known.count(name)) s.unknown.push_back(name);
  }
  return s;
}

}  // namespace platform::db
