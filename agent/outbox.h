#pragma once
// The agent's reports on their way to the control plane. A report is written to the outbox folder
// before anything is sent, and removed only once the API has taken it, so neither a failed request nor
// a kill -9 loses one; each carries its event id, so a resend is recorded once. Reports are sent in
// the order they were made (a sequence number, increasing across restarts), in batches.
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "engine/json.h"

namespace platform::agent {

class Outbox {
 public:
  explicit Outbox(std::string dir);

  // Queues one report about an instance: {event_id, instance_id, seq, type, at, data}.
  void add(const std::string& instance_id, const std::string& type, Json data);

  struct Batch {
    std::vector<std::string> files;
    Json reports = Json::array();
  };
  // Up to `max` of the oldest reports; waits up to `wait` for one when there are none.
  Batch next(std::size_t max, std::chrono::milliseconds wait);
  void remove(const Batch& batch);
  std::size_t pending() const;
  void wake();  // ends a waiting next() early (shutdown)

 private:
  std::string dir_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::int64_t last_seq_ = 0;
};

}  // namespace platform::agent
