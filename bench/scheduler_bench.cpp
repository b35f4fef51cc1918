// Scheduler benchmark: the placer alone putting 10,000 instances (500 processes of various sizes) on
// 1,000 simulated hosts of various sizes, repeated; placements per second. Prints a table, writes JSON.
// Goal: >= 50,000 placements/s.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>

#include "engine/json.h"
#include "reconcilers/placement.h"

using namespace platform;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  CLI::App app{"Scheduler benchmark: placements per second"};
  int hosts_n = 1000, instances = 10000, rounds = 20;
  bool quick = false;
  std::string json_path = "scheduler_bench.json";
  app.add_option("--hosts", hosts_n)->capture_default_str();
  app.add_option("--instances", instances)->capture_default_str();
  app.add_option("--rounds", rounds)->capture_default_str();
  app.add_option("--json", json_path, "Where to write the JSON results");
  app.add_flag("--quick", quick, "A short run that only checks everything works");
  CLI11_PARSE(app, argc, argv);
  if (quick) rounds = 2;

  std::mt19937 rng(42);  // the same cluster and requests every run
  std::vector<reconcilers::HostCapacity> hosts;
  for (int i = 0; i < hosts_n; ++i) {
    const double cpus = std::vector<double>{8, 16, 32, 64}[rng() % 4];
    hosts.push_back({fmt::format("host_{:05}", i), fmt::format("h{}", i), rng() % 50 != 0, cpus,
                     static_cast<std::int64_t>(cpus * 4096), 0, 0});
  }
  std::vector<reconcilers::PlacementRequest> requests;
  for (int i = 0; i < instances; ++i) {
    const int process = static_cast<int>(rng() % 500);
    requests.push_back({fmt::format("env_{}/p", process), 0.25 * (1 + process % 4), 128LL << (process % 5), ""});
  }
  std::vector<double> per_second;
  int placed = 0, unschedulable = 0;
  for (int round = 0; round < rounds; ++round) {
    reconcilers::Placer placer(hosts);
    placed = unschedulable = 0;
    auto t = Clock::now();
    for (const auto& r : requests) (placer.place(r).host_id ? placed : unschedulable)++;
    per_second.push_back(static_cast<double>(requests.size()) / std::chrono::duration<double>(Clock::now() - t).count());
  }
  std::sort(per_second.begin(), per_second.end());
  const double p50 = per_second[per_second.size() / 2], worst = per_second.front();
  fmt::print("Placer: {} instances on {} hosts ({} down), {} rounds\n", instances, hosts_n,
             std::count_if(hosts.begin(), hosts.end(), [](const auto& h) { return !h.up; }), rounds);
  fmt::print("{:>10} {:>14} | {:>16} {:>16} | {}\n", "placed", "unschedulable", "p50 placements/s", "worst round/s",
             "goal >= 50,000/s");
  fmt::print("{:>10} {:>14} | {:>16.0f} {:>16.0f} | {}\n", placed, unschedulable, p50, worst,
             worst >= 50000 ? "met" : "NOT met");
  std::ofstream(json_path) << Json{{"benchmark", "scheduler"}, {"quick", quick}, {"hosts", hosts_n},
                                   {"instances", instances}, {"rounds", rounds}, {"placed", placed},
                                   {"unschedulable", unschedulable}, {"p50_placements_per_s", p50},
                                   {"worst_placements_per_s", worst}}
                                  .dump(2)
                           << "\n";
  fmt::print("JSON written to {}\n", json_path);
  return 0;
}
