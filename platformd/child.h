#pragma once
// Child processes of `platformd dev` and the test harness: PostgreSQL, the OCI registry. Each gets its own
// session and log file, and a signal when its parent dies, so a killed platformd leaves no orphans.
#include <sys/types.h>

#include <csignal>

#include <chrono>
#include <string>
#include <vector>

namespace platform::dev {

struct SpawnOptions {
  std::string log_file;           // stdout and stderr, appended
  bool as_postgres_user = false;  // when root: run as the "postgres" system user (PostgreSQL refuses root)
  int death_signal = 0;           // sent to the child when the parent dies; 0: none
};

// Forks and execs argv[0] (an absolute path). Throws PlatformError when fork fails.
pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& options);

// Spawns argv and waits for it; its exit status (-1 when it did not exit normally).
int run_to_end(const std::vector<std::string>& argv, const SpawnOptions& options);

// True while the child runs; once it has exited, reaps it and sets pid to -1.
bool child_running(pid_t& pid);

// Sends `sig`, waits up to `grace` for the child to exit, then sends `last_resort`; reaps it, pid = -1.
void stop_child(pid_t& pid, int sig, std::chrono::milliseconds grace, int last_resort = SIGKILL);

// Gives `path` (recursively) to the "postgres" system user when we are root; a no-op otherwise.
void give_to_postgres_user(const std::string& path);

// The first directory on the way to `path` (the path itself included, when it exists) that the "postgres"
// system user cannot enter, judged by owner, group and mode bits; empty when it can reach the end, or
// when we are not root (PostgreSQL then runs as us). A root home (/root, mode 0700) is the usual one.
std::string postgres_user_cannot_enter(const std::string& path);

// The last lines of a log file, for error messages.
std::string tail_of(const std::string& file, int lines = 5);

}  // namespace platform::dev
