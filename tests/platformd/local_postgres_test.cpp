// Where `platformd dev` keeps PostgreSQL, and what it says when the "postgres" user cannot get there.
// Needs root and the "postgres" system user (scripts/setup installs postgresql-15); skipped otherwise.
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include "engine/error.h"
#include "platformd/child.h"
#include "platformd/local_postgres.h"
#include "platformd/state_dir.h"

namespace fs = std::filesystem;
using namespace platform;

namespace {

class StateFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0 || !::getpwnam("postgres")) GTEST_SKIP() << "needs root and the postgres system user";
    char tmpl[] = "/tmp/platform-state-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    ::chmod(root_.c_str(), 0755);
    if (const char* h = std::getenv("HOME")) home_ = h;
  }
  void TearDown() override {
    if (home_) ::setenv("HOME", home_->c_str(), 1);
    else ::unsetenv("HOME");
    std::error_code ec;
    if (!root_.empty()) fs::remove_all(root_, ec);
  }
  // A folder like root's home: owned by root, mode 0700.
  fs::path closed(const std::string& name) {
    auto p = root_ / name;
    fs::create_directories(p);
    ::chmod(p.c_str(), 0700);
    return p;
  }
  fs::path root_;
  std::optional<std::string> home_;
};

TEST_F(StateFolder, AFolderClosedToThePostgresUserIsNamed) {
  const auto home = closed("home");
  EXPECT_EQ(dev::postgres_user_cannot_enter((home / "state/postgres").string()), home.string());
  ::chmod(home.c_str(), 0711);  // searchable by others: the way through is open
  EXPECT_EQ(dev::postgres_user_cannot_enter((home / "state/postgres").string()), "");
  EXPECT_EQ(dev::postgres_user_cannot_enter(root_.string()), "");
}

TEST_F(StateFolder, ClusterUnderAClosedFolderIsRefusedBeforeInitdbWithTheWayOut) {
  const auto home = closed("home");
  const auto state = home / ".local/share/platform/dev";
  dev::LocalPostgres pg({(state / "postgres").string(), (state / "run").string(), 54399, "platform", "platform",
                         (state / "postgres.log").string()});
  try {
    pg.init();
    FAIL() << "init() under a folder the postgres user cannot enter should be refused";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.error().code, ErrorCode::invalid_request);
    EXPECT_NE(std::string(e.what()).find("cannot enter " + home.string()), std::string::npos) << e.what();
    EXPECT_NE(e.error().hint.find("--state /var/lib/platform/dev"), std::string::npos) << e.error().hint;
  }
  EXPECT_FALSE(fs::exists(state / "postgres" / "PG_VERSION"));  // initdb never ran
}

TEST_F(StateFolder, RootKeepsItsStateInVarLibUnlessAClusterAlreadyLivesInItsHome) {
  const auto home = closed("home");
  ::setenv("HOME", home.c_str(), 1);
  EXPECT_EQ(dev::default_state_dir(), "/var/lib/platform/dev");
  const auto old = home / ".local/share/platform/dev";
  fs::create_directories(old / "postgres");
  std::ofstream(old / "postgres" / "PG_VERSION") << "15\n";
  EXPECT_EQ(dev::default_state_dir(), old.string());
}

}  // namespace
