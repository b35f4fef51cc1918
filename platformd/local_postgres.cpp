#include "platformd/local_postgres.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <random>
#include <thread>
#include <vector>

#include "engine/error.h"
#include "platformd/child.h"

namespace platform::dev {
namespace fs = std::filesystem;

int free_loopback_port(int lo, int hi) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(lo, hi - 1);
  for (int attempt = 0; attempt < 200; ++attempt) {
    int port = pick(rng);
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) break;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (free) return port;
  }
  throw PlatformError(ErrorCode::unavailable, "no free TCP port on 127.0.0.1 between " + std::to_string(lo) + " and " +
                                                  std::to_string(hi), "Stop some local servers and retry.");
}

std::string postgres_bindir() {
  for (const char* v : {"15", "16", "17", "14", "13"}) {
    auto dir = std::string("/usr/lib/postgresql/") + v + "/bin";
    if (fs::exists(dir + "/postgres") && fs::exists(dir + "/initdb")) return dir;
  }
  throw PlatformError(ErrorCode::unavailable, "PostgreSQL server binaries were not found under /usr/lib/postgresql",
                      "Install them: apt-get install postgresql-15 (scripts/setup does it).");
}

LocalPostgres::LocalPostgres(LocalPostgresOptions options) : options_(std::move(options)) {
  if (options_.log_file.empty()) options_.log_file = (fs::path(options_.data_dir).parent_path() / "postgres.log").string();
}

LocalPostgres::~LocalPostgres() {
  try {
    stop();
  } catch (...) {
  }
}

bool LocalPostgres::initialized() const { return fs::exists(fs::path(options_.data_dir) / "PG_VERSION"); }

void LocalPostgres::init() {
  // PostgreSQL runs as the "postgres" user when we are root; a folder it cannot reach makes initdb fail
  // with a bare "Permission denied", so name the folder and the way out before trying.
  for (const auto& p : {options_.data_dir, options_.socket_dir})
    if (auto blocked = postgres_user_cannot_enter(p); !blocked.empty())
      throw PlatformError(ErrorCode::invalid_request,
                          "PostgreSQL runs as the \"postgres\" user, which cannot enter " + blocked + ", so it cannot reach " + p,
                          "Choose a state folder it can reach, e.g. platformd dev --state /var/lib/platform/dev (the default "
                          "for root), or PLATFORM_STATE=/var/lib/platform/dev.");
  fs::create_directories(options_.socket_dir);
  give_to_postgres_user(options_.socket_dir);
  fs::create_directories(fs::path(options_.log_file).parent_path());
  if (!fs::exists(options_.log_file)) std::ofstream(options_.log_file).flush();
  give_to_postgres_user(options_.log_file);
  if (initialized()) return;
  fs::create_directories(options_.data_dir);
  ::chmod(options_.data_dir.c_str(), 0700);
  give_to_postgres_user(options_.data_dir);
  auto bin = postgres_bindir();
  pid_t pid = spawn({bin + "/initdb", "-D", options_.data_dir, "-U", options_.user, "--auth=trust", "-E", "UTF8",
                     "--locale=C", "--no-instructions"},
                    {options_.log_file, true, SIGINT});
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw PlatformError(ErrorCode::internal, "initdb failed for " + options_.data_dir + ":\n" + tail_of(options_.log_file),
                        "See " + options_.log_file + ".");
}

std::string LocalPostgres::conninfo(const std::string& database) const {
  return "host=" + options_.socket_dir + " port=" + std::to_string(options_.port) + " user=" + options_.user +
         " dbname=" + (database.empty() ? options_.database : database);
}

void LocalPostgres::start() {
  init();
  // A postmaster.pid left by a server that died with its parent is removed by postgres itself when the
  // pid is gone; a live one means another server owns this folder.
  auto bin = postgres_bindir();
  pid_ = spawn({bin + "/postgres", "-D", options_.data_dir, "-k", options_.socket_dir, "-p",
                std::to_string(options_.port), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300",
                "-c", "fsync=on", "-c", "idle_in_transaction_session_timeout=60s", "-c", "log_min_messages=warning"},
               {options_.log_file, true, SIGINT});
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    if (!alive())
      throw PlatformError(ErrorCode::unavailable, "PostgreSQL exited during start-up:\n" + tail_of(options_.log_file),
                          "See " + options_.log_file + " (is another server using port " +
                              std::to_string(options_.port) +
                              " or the data folder? platformd dev takes another port with --pg-port).");
    try {
      pqxx::connection c(conninfo("postgres"));
      pqxx::nontransaction tx(c);
      if (tx.exec_params("SELECT 1 FROM pg_database WHERE datname = $1", options_.database).empty())
        tx.exec("CREATE DATABASE " + tx.quote_name(options_.database));
      return;
    } catch (const pqxx::broken_connection&) {
    } catch (const pqxx::sql_error& e) {
      if (std::string(e.sqlstate()) != "57P03") throw;  // "the database system is starting up"
    }
    if (std::chrono::steady_clock::now() > deadline)
      throw PlatformError(ErrorCode::timed_out, "PostgreSQL did not accept connections within 60 s",
                          "See " + options_.log_file + ".");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

bool LocalPostgres::alive() { return child_running(pid_); }

void LocalPostgres::stop() {
  // Fast shutdown (disconnect clients, checkpoint, exit); after 30 s an immediate one.
  stop_child(pid_, SIGINT, std::chrono::seconds(30), SIGQUIT);
}

}  // namespace platform::dev
