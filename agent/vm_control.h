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

 private:
  struct Answer {
    ExecResult result;
    bool done = false;
  };
  void read_some(std::chrono::milliseconds wait);  // called by the one reader, without mu_
  void parse();                                    // with mu_

  int fd_;
  std::mutex write_mu_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool reading_ = false, broken_ = false;
  std::string why_broken_;
  std::string buf_;                      // read, not yet a whole answer
  std::map<std::string, Answer> wanted_;  // by tag: answers someone waits for
  const std::string tag_prefix_;  // the clock and this object: no other connection's tags start so
  std::uint64_t next_tag_ = 1;
};

}  // namespace platform::agent
