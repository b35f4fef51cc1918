#pragma once
// The agent's end of a microVM's control line (the guest's end and the protocol:
// agent/init/control_line.h). QEMU's socket for the line takes one client at a time, so the agent
// keeps one connection per VM and everyone shares it: health checks, `platform exec` and stop. Each
// command carries a tag; answers come back by tag, in any order, so a long command never holds up a
// health check.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "agent/runtime.h"

namespace platform::agent {

class VmControl {
 public:
  explicit VmControl(int fd);  // a connected socket; owned from here on
  ~VmControl();
  VmControl(const VmControl&) = delete;
  VmControl& operator=(const VmControl&) = delete;

  // Writes `line` (ending in a newline) whole; false when the line is broken.
  bool send(const std::string& line);
  // Runs a command in the guest and waits for its answer until `timeout` and a little more (the guest
  // kills it at `timeout` and says so). Sets `output` to what went wrong when the line fails.
  ExecResult run(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                 std::chrono::milliseconds timeout, std::size_t max_output, const std::string& input);
  bool broken() const;

  // A session (`platform exec -i/-it`, agent/vm_session.h): starts it and answers its tag; "" with
  // `why` when it could not be sent. Its output collects here while someone reads the line (pump).
  std::string open_stream(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                          bool tty, int rows, int cols, std::string& why);
  // Moves the output that arrived for `tag` into `into`; true once it has ended and all was taken (then
  // `exit_code` is its status, -1 when none: the line broke, or it could not start and `into` says why).
  bool take_output(const std::string& tag, std::string& into, int& exit_code);
  void close_stream(const std::string& tag);  // forgets it
  // Reads the line for up to `wait` for everyone, or while another caller does, waits for it. Returns
  // early, too, when `also` (a descriptor of the caller's, -1: none) has something to read.
  void pump(std::chrono::milliseconds wait, int also = -1);

 private:
  struct Answer {
    ExecResult result;
    bool done = false;
  };
  struct Stream {
    std::string output;
    bool ended = false;
    int exit_code = -1;
  };
  // With `lock` held: reads for everyone for up to `wait` (or waits for whoever does), then parses.
  void read_for_all(std::unique_lock<std::mutex>& lock, std::chrono::milliseconds wait, int also = -1);
  void parse();  // with mu_

  int fd_;
  std::mutex write_mu_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool reading_ = false, broken_ = false;
  std::string why_broken_;
  std::string buf_;                      // read, not yet a whole answer
  std::map<std::string, Answer> wanted_;  // by tag: answers someone waits for
  std::map<std::string, Stream> streams_;  // by tag: open sessions
  const std::string tag_prefix_;  // the clock and this object: no other connection's tags start so
  std::uint64_t next_tag_ = 1;
};

}  // namespace platform::agent
