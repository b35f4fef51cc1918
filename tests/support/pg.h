#pragma once
// Test harness: one real PostgreSQL cluster per test binary (started in a temp folder, stopped at
// exit), and a fresh migrated database per test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <pqxx/pqxx>
#include <string>

#include "engine/migrate.h"
#include "platformd/local_postgres.h"

namespace platform::harness {

class PgEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() / ("platform-test-" + std::to_string(::getpid()));
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
    ::chmod(root_.c_str(), 0755);
    // A port that is free now may be taken before PostgreSQL binds it: try a few.
    for (int attempt = 1;; ++attempt) {
      pg_ = std::make_unique<dev::LocalPostgres>(dev::LocalPostgresOptions{
          (root_ / "data").string(), (root_ / "run").string(), dev::free_loopback_port(), "platform", "platform",
          (root_ / "postgres.log").string()});
      try {
        pg_->start();
        break;
      } catch (const std::exception& e) {
        pg_.reset();
        if (attempt == 5 || std::string(e.what()).find("already in use") == std::string::npos) throw;
      }
    }
    instance_ = this;
  }
  void TearDown() override {
    pg_.reset();
    std::filesystem::remove_all(root_);
  }
  static PgEnvironment& get() { return *instance_; }

  // A new, migrated database; returns its connection string.
  std::string fresh_database() {
    auto name = "t" + std::to_string(counter_++);
    {
      pqxx::connection c(pg_->conninfo("postgres"));
      pqxx::nontransaction tx(c);
      tx.exec("DROP DATABASE IF EXISTS " + name);
      tx.exec("CREATE DATABASE " + name);
    }
    auto conninfo = pg_->conninfo(name);
    db::migrate(conninfo);
    return conninfo;
  }
  dev::LocalPostgres& server() { return *pg_; }
  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
  std::unique_ptr<dev::LocalPostgres> pg_;
  std::atomic<int> counter_{0};
  static inline PgEnvironment* instance_ = nullptr;
};

inline std::string fresh_database() { return PgEnvironment::get().fresh_database(); }

}  // namespace platform::harness
