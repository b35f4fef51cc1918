#pragma once
// A PostgreSQL cluster owned by a state folder: initdb on first use, started as a child process
// (as the "postgres" system user when we are root, since PostgreSQL refuses to run as root),
// stopped with a fast shutdown. Used by `platformd dev` and by the test harness.
#include <sys/types.h>

#include <string>

namespace platform::dev {

struct LocalPostgresOptions {
  std::string data_dir;    // created by initdb
  std::string socket_dir;  // unix socket directory
  int port = 7072;         // also listens on 127.0.0.1:port
  std::string user = "platform";
  std::string database = "platform";
  std::string log_file;    // server log; empty: <data_dir>/../postgres.log
};

class LocalPostgres {
 public:
  explicit LocalPostgres(LocalPostgresOptions options);
  ~LocalPostgres();  // stops the server if this object started it

  bool initialized() const;
  void init();   // initdb (idempotent)
  void start();  // starts the server, waits until it accepts connections, creates the database
  void stop();   // fast shutdown; waits for the process
  bool alive();  // the child is still running
  pid_t pid() const { return pid_; }
  std::string conninfo(const std::string& database = {}) const;
  const LocalPostgresOptions& options() const { return options_; }

 private:
  LocalPostgresOptions options_;
  pid_t pid_ = -1;
};

// A TCP port on 127.0.0.1 that nothing listens on right now, picked at random from [lo, hi). Tests and
// benchmarks use 20000-32000, below Linux's ephemeral range, so client sockets never take it meanwhile.
int free_loopback_port(int lo = 20000, int hi = 32000);

// The directory holding initdb and postgres (PostgreSQL 15 preferred).
std::string postgres_bindir();

}  // namespace platform::dev
