// Manifest benchmark: parse + validate time for a typical platform.toml and for one with 200 processes
// (each with a health check and an endpoint), plus the normalised JSON the release hashes. Prints a table
// and writes JSON. The deploy receipt latency half of issue 3's benchmark joins once deploy exists.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "engine/json.h"
#include "engine/manifest/manifest.h"

using namespace platform;
using Clock = std::chrono::steady_clock;

namespace {

const char* kTypical = R"(schema_version = 1

[app]
name = "shop"

[processes.web]
command = ["./server", "--port", "8443"]
cpu = 0.5
memory = "512MiB"
count = 2

[processes.web.health]
type = "http"
path = "/healthz"

[processes.worker]
command = "./worker --queue default"
restart = "on-failure"

[[endpoints]]
port = 5432
process = "worker"
proxy_protocol = "v2"

[[routes]]
hostnames = ["shop.example.com", "www.shop.example.com"]
process = "web"
internal_port = 8443

[[volumes]]
name = "data"
size = "10GiB"
mount = "/var/lib/shop"
process = "worker"

[config]
required = ["LOG_LEVEL"]
optional = ["FEATURE_FLAGS"]

[secrets]
required = ["DATABASE_URL", "API_KEY"]

[env.staging.processes.web]
count = 1
memory = "256MiB"
)";

std::string large(int processes) {
  std::string s = "schema_version = 1\n\n[app]\nname = \"big\"\n";
  for (int i = 0; i < processes; ++i) {
    auto p = "p" + std::to_string(i);
    s += fmt::format(
        "\n[processes.{0}]\ncommand = [\"/app/run\", \"--role\", \"{0}\"]\ncpu = 0.5\nmemory = \"512MiB\"\ncount = 2\n"
        "restart = {{ policy = \"on-failure\", max_attempts = 5 }}\n\n[processes.{0}.health]\ntype = \"tcp\"\n"
        "interval = \"5s\"\n\n[[endpoints]]\nport = {1}\ninternal_port = 8080\nprocess = \"{0}\"\n",
        p, 10000 + i);
  }
  s += "\n[config]\nrequired = [\"A\", \"B\"]\n[env.staging.processes.p0]\ncount = 1\n";
  return s;
}

struct Result {
  std::string name;
  std::size_t bytes = 0;
  int iterations = 0;
  double p50_us = 0, p99_us = 0, mean_us = 0;
};

Result measure(const std::string& name, const std::string& text, double seconds) {
  std::vector<double> us;
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (Clock::now() < deadline && us.size() < 1'000'000) {
    auto t = Clock::now();
    auto r = manifest::parse(text, "bench.toml");
    if (!r.manifest) throw std::runtime_error(name + " did not validate: " + r.diagnostics.front().format());
    auto hashed = manifest::to_json(*r.manifest).dump();  // what a release stores and hashes
    if (hashed.empty()) throw std::runtime_error("empty normalised form");
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
  }
  Result res{name, text.size(), static_cast<int>(us.size())};
  double sum = 0;
  for (double v : us) sum += v;
  std::sort(us.begin(), us.end());
  auto pct = [&](double q) { return us[std::min(us.size() - 1, static_cast<std::size_t>(q * static_cast<double>(us.size() - 1) + 0.5))]; };
  res.p50_us = pct(0.50);
  res.p99_us = pct(0.99);
  res.mean_us = sum / static_cast<double>(us.size());
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 3;
  bool quick = false;
  std::string json_path = "manifest_bench.json";
  CLI::App app{"Manifest benchmark: platform.toml parse + validate + normalise time"};
  app.add_option("--seconds", seconds, "Seconds per manifest")->check(CLI::Range(0.1, 600.0));
  app.add_option("--json", json_path, "Where to write the JSON results");
  app.add_flag("--quick", quick, "A short run that only checks everything works");
  CLI11_PARSE(app, argc, argv);
  if (quick) seconds = 0.2;
  try {
    std::vector<Result> results = {measure("typical (2 processes)", kTypical, seconds),
                                   measure("200 processes", large(200), seconds)};
    fmt::print("Manifest parse + validate + normalised JSON, one thread:\n");
    fmt::print("{:<22} | {:>8} | {:>10} | {:>9} {:>9} {:>9}\n", "manifest", "bytes", "iterations", "p50 us", "p99 us",
               "mean us");
    Json rows = Json::array();
    for (const auto& r : results) {
      fmt::print("{:<22} | {:>8} | {:>10} | {:>9.1f} {:>9.1f} {:>9.1f}\n", r.name, r.bytes, r.iterations, r.p50_us,
                 r.p99_us, r.mean_us);
      rows.push_back({{"manifest", r.name}, {"bytes", r.bytes}, {"iterations", r.iterations}, {"p50_us", r.p50_us},
                      {"p99_us", r.p99_us}, {"mean_us", r.mean_us}});
    }
    std::ofstream(json_path) << Json{{"benchmark", "manifest"}, {"quick", quick}, {"parse", rows}}.dump(2) << "\n";
    fmt::print("JSON written to {}\n", json_path);
  } catch (const std::exception& e) {
    std::cerr << "manifest_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
