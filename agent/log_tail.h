#pragma once
// Reading one run's stdout and stderr files (written by the container directly, so they survive a
// crash) as lines to ship. Each line is identified by its run, stream and byte offset, so shipping the
// same bytes twice (after an agent restart a run is read from the start again) stores them once.
//
// A line's time is when the agent first saw its bytes: observe() notes how long each file is, cheaply
// and often (the supervisor does it every 200 ms), and read(), which ships once a second, gives each
// line the first observation that had it; a line never observed gets the time of the read.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/json.h"

namespace platform::agent {

class LogTail {
 public:
  LogTail(std::string instance_id, std::string run, std::string stdout_path, std::string stderr_path);

  // The complete lines written since the last commit(), at most about `max_bytes`, as the API takes them
  // ([{instance_id, run, stream, offset, at, message}]). With `final`, an unfinished last line too. Lines
  // longer than 16 KiB are cut into pieces; bytes that are not UTF-8 become U+FFFD.
  Json read(bool final, std::size_t max_bytes = 1 << 20);
  void commit();  // what the last read() returned was shipped
  // Notes the files' sizes at `now`: bytes first seen now get this time.
  void observe(std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

 private:
  struct Mark {
    std::int64_t size;  // the file was this long ...
    std::chrono::system_clock::time_point at;  // ... when observed at this time
  };
  struct Stream {
    std::string name, path;
    std::int64_t offset = 0, next = 0;
    std::vector<Mark> marks;  // growing sizes, of bytes not yet shipped
  };
  static void observe(Stream& s, std::chrono::system_clock::time_point now);
  void read_stream(Stream& s, bool final, std::size_t max_bytes, Json& out);
  std::string instance_id_, run_;
  Stream out_, err_;
};

// `bytes` with every invalid UTF-8 sequence (and NUL) replaced by U+FFFD.
std::string valid_utf8(std::string_view bytes);

}  // namespace platform::agent
