#pragma once
// Reading one run's stdout and stderr files (written by the container directly, so they survive a
// crash) as lines to ship. Each line is identified by its run, stream and byte offset, so shipping the
// same bytes twice (after an agent restart a run is read from the start again) stores them once.
#include <cstdint>
#include <string>

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

 private:
  struct Stream {
    std::string name, path;
    std::int64_t offset = 0, next = 0;
  };
  void read_stream(Stream& s, bool final, std::size_t max_bytes, Json& out);
  std::string instance_id_, run_;
  Stream out_, err_;
};

// `bytes` with every invalid UTF-8 sequence (and NUL) replaced by U+FFFD.
std::string valid_utf8(std::string_view bytes);

}  // namespace platform::agent
