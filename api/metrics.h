#pragma once
// Counters and gauges exported at /metrics in the Prometheus text format.
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace platform::api {

class Metrics {
 public:
  std::atomic<std::uint64_t> requests_total{0};
  std::array<std::atomic<std::uint64_t>, 6> responses_by_class{};  // index = status / 100
  std::atomic<std::uint64_t> connections_total{0};
  std::atomic<std::int64_t> connections_active{0};
  std::atomic<std::uint64_t> connections_refused{0};
  std::atomic<std::uint64_t> mutations_total{0};
  std::atomic<std::uint64_t> watch_requests_total{0};

  // Gauges read at scrape time (pool size, hub waiters, ...): name, help, reader.
  struct Gauge {
    std::string name, help;
    std::function<double()> read;
  };
  void add_gauge(Gauge g) { gauges_.push_back(std::move(g)); }
  std::string render() const;

 private:
  std::vector<Gauge> gauges_;
};

}  // namespace platform::api
