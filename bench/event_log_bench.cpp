// Event log benchmark: append throughput and latency with 1, 4 and 16 concurrent writers, next to a
// plain single-row INSERT measured in the same run on the same database (the ceiling), and the
// NOTIFY -> long-poll watcher wake-up latency through the real API server and its in-memory fan-out.
// Starts its own PostgreSQL cluster in a temporary folder and stops it. Prints a table; writes JSON.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <pqxx/pqxx>
#include <optional>
#include <thread>

#include "api/auth.h"
#include "api/client.h"
#include "api/resources.h"
#include "api/server.h"
#include "engine/db.h"
#include "engine/event_store.h"
#include "engine/ids.h"
#include "engine/listener.h"
#include "engine/migrate.h"
#include "engine/signal.h"
#include "platformd/local_postgres.h"

using namespace platform;
using Clock = std::chrono::steady_clock;

namespace {

struct Settings {
  double seconds = 6.0;        // per side and writer count, in alternating slices
  int wakeups = 200;           // samples per watcher count
  std::vector<int> writers = {1, 4, 16};
  std::vector<int> watchers = {1, 10, 100};  // the goal is on one watcher; more show the fan-out cost
  std::string json_path = "event_log_bench.json";
  int slices = 6;     // alternating slices per side
  std::string only;  // measure one side alone (for profiling it); empty: all three side by side
};

// CPU time of the whole machine (/proc/stat) and of this process (the client side), in seconds.
struct CpuSample {
  double busy = 0, idle = 0, steal = 0, self = 0;
  static CpuSample now() {
    CpuSample c;
    std::ifstream stat("/proc/stat");
    std::string cpu;
    double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
    const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
    // Steal is time the hypervisor gave to someone else: neither ours nor idle.
    c.busy = (user + nice + system + irq + softirq) / tick;
    c.idle = (idle + iowait) / tick;
    c.steal = steal / tick;
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    c.self = secs(ru.ru_utime) + secs(ru.ru_stime);
    return c;
  }
};

struct Stats {
  std::int64_t ops = 0;
  double seconds = 0;
  // CPU-seconds spent while measuring: by this process (client threads, pool, doorbell) and by the
  // rest of the machine (PostgreSQL's backends, WAL writer, kernel work for them), and idle.
  double client_cpu = 0, server_cpu = 0, idle_cpu = 0, steal_cpu = 0;
  std::uint64_t notifies = 0;  // wake-up NOTIFYs the pool's doorbell sent (the append only)
  double p50_ms = 0, p99_ms = 0;
  std::vector<double> latencies_ms;
  double rate() const { return seconds > 0 ? static_cast<double>(ops) / seconds : 0; }
  double per_op_us(double cpu) const { return ops > 0 ? cpu * 1e6 / static_cast<double>(ops) : 0; }
  double share(double cpu) const {
    double all = client_cpu + server_cpu + idle_cpu + steal_cpu;
    return all > 0 ? cpu / all : 0;
  }
  void add(const Stats& slice) {
    ops += slice.ops;
    seconds += slice.seconds;
    client_cpu += slice.client_cpu;
    server_cpu += slice.server_cpu;
    idle_cpu += slice.idle_cpu;
    steal_cpu += slice.steal_cpu;
    notifies += slice.notifies;
    latencies_ms.insert(latencies_ms.end(), slice.latencies_ms.begin(), slice.latencies_ms.end());
  }
};

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto idx = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(idx, v.size() - 1)];
}

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Runs `writers` threads calling `op(conn, writer, i)` until the time is up (and at most 10 million
// times). Every call is one statement and one commit. With a conninfo each writer gets its own
// connection; without one (the pool-driven append) `conn` is null and op brings its own.
template <class Op>
Stats measure(const std::string& conninfo, int writers, double seconds, Op op) {
  std::vector<std::vector<double>> lat(static_cast<std::size_t>(writers));
  std::vector<std::unique_ptr<pqxx::connection>> conns(static_cast<std::size_t>(writers));
  if (!conninfo.empty())
    for (auto& c : conns) c = std::make_unique<pqxx::connection>(conninfo);
  std::atomic<bool> go{false};
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&, w] {
      while (!go) std::this_thread::yield();
      auto& mine = lat[static_cast<std::size_t>(w)];
      for (std::int64_t i = 0; i < 10'000'000 && Clock::now() < deadline; ++i) {
        auto t = Clock::now();
        op(conns[static_cast<std::size_t>(w)].get(), w, i);
        mine.push_back(ms_since(t));
      }
    });
  auto cpu_before = CpuSample::now();
  auto start = Clock::now();
  go = true;
  for (auto& t : threads) t.join();
  Stats s;
  s.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  auto cpu_after = CpuSample::now();
  s.client_cpu = cpu_after.self - cpu_before.self;
  s.server_cpu = std::max(0.0, (cpu_after.busy - cpu_before.busy) - s.client_cpu);
  s.idle_cpu = cpu_after.idle - cpu_before.idle;
  s.steal_cpu = cpu_after.steal - cpu_before.steal;
  for (auto& v : lat) s.latencies_ms.insert(s.latencies_ms.end(), v.begin(), v.end());
  s.ops = static_cast<std::int64_t>(s.latencies_ms.size());
  return s;
}

// Machines are noisy: the sides alternate in short slices so drift hits them alike.
std::vector<Stats> alternate(int slices, const std::vector<std::function<Stats(int)>>& sides) {
  std::vector<Stats> out(sides.size());
  for (int k = 0; k < slices; ++k)
    for (std::size_t i = 0; i < sides.size(); ++i) out[i].add(sides[i](k));
  for (auto& st : out) {
    st.p50_ms = percentile(st.latencies_ms, 0.50);
    st.p99_ms = percentile(st.latencies_ms, 0.99);
  }
  return out;
}

const Json kData = {{"name", "bench"}, {"replicas", 3}, {"labels", {{"team", "core"}}}};

Json metadata(int w) {
  return {{"actor", "usr_bench"},        {"org_id", "org_bench"},
          {"operation_id", new_id("op")}, {"request_id", new_id("req")},
          {"resource_id", "app_bench" + std::to_string(w)}};
}

// The ceiling: the same row (same columns, same JSON) into a table with only a primary key, in its own
// transaction: BEGIN; INSERT; COMMIT.
Stats plain_insert(const std::string& conninfo, int writers, double seconds) {
  return measure(conninfo, writers, seconds, [](pqxx::connection* c, int w, std::int64_t i) {
    // Prepared, like the append's statement: the ceiling does not pay for parsing either.
    c->prepare("bench_plain_insert",
              "INSERT INTO bench_plain (stream_name, category, stream_version, event_id, type, schema_version, data,"
              " metadata) VALUES ($1, 'bench', $2, $3::uuid, 'BenchAppended', 1, $4::jsonb, $5::jsonb)");
    pqxx::work tx(*c);
    tx.exec_prepared("bench_plain_insert", "bench-" + std::to_string(w), i, uuid_to_string(new_uuid_v7()),
                     kData.dump(), metadata(w).dump());
    tx.commit();
  });
}

// A breakdown, not the ceiling: the same row INSERTed straight into `events` (all its indexes, no
// checks), so the table shows what the indexes cost and what the append's lock, checks and wake-up cost.
Stats raw_events_insert(const std::string& conninfo, int writers, double seconds, const std::string& run) {
  return measure(conninfo, writers, seconds, [&run](pqxx::connection* c, int w, std::int64_t i) {
    c->prepare("bench_events_insert",
              "INSERT INTO events (stream_name, category, stream_version, event_id, type, schema_version, data,"
              " metadata) VALUES ($1, 'bench', $2, $3::uuid, 'BenchAppended', 1, $4::jsonb, $5::jsonb)");
    pqxx::work tx(*c);
    tx.exec_prepared("bench_events_insert", "bench-raw-" + run + "-" + std::to_string(w), i,
                     uuid_to_string(new_uuid_v7()), kData.dump(), metadata(w).dump());
    tx.commit();
  });
}

// The product's path: a pool transaction (pool connections leave the NOTIFY to the after-commit
// doorbell), events::append with an expected version, commit, doorbell. `run` names fresh streams.
Stats append(db::Pool& pool, int writers, double seconds, const std::string& run) {
  auto sent_before = pool.wakeups_sent();
  auto st = measure("", writers, seconds, [&](pqxx::connection*, int w, std::int64_t i) {
    pool.transact([&](pqxx::work& tx) {
      events::append(tx, "bench-" + run + "-" + std::to_string(w), i - 1,
                     {{uuid_to_string(new_uuid_v7()), "BenchAppended", 1, kData, metadata(w)}});
    });
  });
  st.notifies = pool.wakeups_sent() - sent_before;  // a last NOTIFY may still be in flight: at most one short
  return st;
}

struct Wakeup {
  int watchers = 0;
  int samples = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
};

// One appender commits an event every 20 ms; `watchers` clients each hold a long poll on the org's
// events and record when the event reaches them. Latency = wake time - the appender's commit return.
Wakeup wakeup(const std::string& conninfo, int watchers, int samples) {
  Signal wake;
  boost::asio::io_context io;
  Listener listener(io, conninfo, "platform_events", [&] { wake.notify(); });
  listener.start();
  std::thread io_thread([&] {
    auto guard = boost::asio::make_work_guard(io);
    io.run();
  });
  api::ServerOptions o;
  o.port = 0;
  api::Server server(o, conninfo, wake);
  server.start();
  auto url = "http://127.0.0.1:" + std::to_string(server.port());

  db::Pool pool(conninfo, 1);
  std::string org, token, org_name = "bench-" + std::to_string(watchers);
  pool.transact([&](pqxx::work& tx) {
    auto user = api::ensure_user(tx, "bench");
    api::Actor a{user, new_id("req"), new_id("op"), "org.create", "bench"};
    org = api::create_resource(tx, a, *api::kind_by_name("org"), "", "", org_name, "", Json::object()).resource_id;
    token = api::issue_token(tx, user, "", "bench").secret;
  });

  std::vector<Clock::time_point> committed(static_cast<std::size_t>(samples));
  // woken[w][i]: when watcher w received event i (compared with `committed` only after every thread joined).
  std::vector<std::vector<std::optional<Clock::time_point>>> woken(
      static_cast<std::size_t>(watchers), std::vector<std::optional<Clock::time_point>>(static_cast<std::size_t>(samples)));
  std::vector<std::atomic<int>> received(static_cast<std::size_t>(watchers));
  std::atomic<int> armed{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < watchers; ++w)
    threads.emplace_back([&, w] {
      api::Client client(url, token);
      std::string after = "now";
      bool first = true;
      auto& mine = woken[static_cast<std::size_t>(w)];
      auto& count = received[static_cast<std::size_t>(w)];
      while (!stop && count < samples) {
        if (first) armed++;
        first = false;
        Json page;
        try {
          page = client.call("GET", "/v1/orgs/" + org_name + "/events?wait=5s&after=" + after);
        } catch (const std::exception& e) {
          spdlog::warn("watcher {}: {}", w, e.what());
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          continue;
        }
        auto now = Clock::now();
        for (const auto& e : page["events"]) {
          auto i = e["data"].value("i", -1);
          if (i < 0 || i >= samples || mine[static_cast<std::size_t>(i)]) continue;
          mine[static_cast<std::size_t>(i)] = now;
          count++;
        }
        after = page["next_cursor"].get<std::string>();
      }
    });
  while (armed < watchers) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let every first long poll reach the hub

  db::Pool appender(conninfo, 1, "bench-appender");  // the product's path: commit, then the doorbell
  for (int i = 0; i < samples; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // every watcher is waiting again
    appender.transact([&](pqxx::work& tx) {
      events::append(tx, "bench-wake-" + org, std::nullopt,
                     {{uuid_to_string(new_uuid_v7()), "BenchPinged", 1, Json{{"i", i}},
                       Json{{"actor", "bench"}, {"org_id", org}}}});
    });
    committed[static_cast<std::size_t>(i)] = Clock::now();
  }
  auto deadline = Clock::now() + std::chrono::seconds(10);
  auto done = [&] {
    for (auto& c : received)
      if (c < samples) return false;
    return true;
  };
  while (!done() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  stop = true;
  for (auto& t : threads) t.join();
  server.stop();
  listener.stop();
  io.stop();
  io_thread.join();

  std::vector<double> all;
  for (const auto& mine : woken)
    for (int i = 0; i < samples; ++i)
      if (const auto& t = mine[static_cast<std::size_t>(i)])
        // Below 0 means woken before the appender had read its COMMIT reply: counted as 0.
        all.push_back(std::max(0.0, std::chrono::duration<double, std::milli>(*t - committed[static_cast<std::size_t>(i)]).count()));
  Wakeup r;
  r.watchers = watchers;
  r.samples = static_cast<int>(all.size());
  r.p50_ms = percentile(all, 0.50);
  r.p99_ms = percentile(all, 0.99);
  r.max_ms = all.empty() ? 0 : all.back();
  if (r.samples < watchers * samples)
    spdlog::warn("{} of {} wake-ups never arrived", watchers * samples - r.samples, watchers * samples);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  bool quick = false;
  std::string database;
  CLI::App app{"Event log benchmark: append vs plain INSERT, and NOTIFY -> watcher wake-up latency"};
  app.add_option("--seconds", s.seconds, "Seconds per side and writer count (split into --slices alternating slices)")->check(CLI::Range(0.1, 600.0));
  app.add_option("--wakeups", s.wakeups, "Wake-up samples per watcher count")->check(CLI::Range(1, 100000));
  app.add_option("--writers", s.writers, "Writer counts to measure (default 1 4 16)")->check(CLI::Range(1, 64));
  app.add_option("--watchers", s.watchers, "Watcher counts to measure (default 1 10 100)")->check(CLI::Range(1, 1000));
  app.add_option("--json", s.json_path, "Where to write the JSON results");
  app.add_option("--slices", s.slices, "Alternating slices per side (more: less drift, more start-up)")->check(CLI::Range(1, 100));
  app.add_option("--only", s.only, "Measure one side alone, e.g. under perf (no ratios then)")
      ->check(CLI::IsMember({"ceiling", "events-insert", "append"}));
  app.add_flag("--quick", quick, "A short run that only checks everything works (numbers are not meaningful)");
  CLI11_PARSE(app, argc, argv);
  if (quick) {
    s.seconds = 0.3;
    s.wakeups = 10;
    s.watchers = {1, 10};
  }
  spdlog::set_level(spdlog::level::warn);

  auto root = std::filesystem::temp_directory_path() / ("platform-bench-" + std::to_string(::getpid()));
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root);
  std::filesystem::permissions(root, std::filesystem::perms::all & ~std::filesystem::perms::others_write &
                                         ~std::filesystem::perms::group_write);
  int rc = 0;
  try {
    dev::LocalPostgres pg({(root / "data").string(), (root / "run").string(), dev::free_loopback_port(),
                           "platform", "platform", (root / "postgres.log").string()});
    pg.start();
    auto conninfo = pg.conninfo();
    db::migrate(conninfo);
    {
      pqxx::connection c(conninfo);
      pqxx::work tx(c);
      tx.exec(
          "CREATE TABLE bench_plain (global_position bigserial PRIMARY KEY, tx_id xid8 NOT NULL DEFAULT"
          " pg_current_xact_id(), stream_name text NOT NULL, category text NOT NULL, stream_version bigint NOT NULL,"
          " event_id uuid NOT NULL, type text NOT NULL, schema_version integer NOT NULL, data jsonb NOT NULL,"
          " metadata jsonb NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now())");
      tx.commit();
    }

    // Wake-ups first, on a small table and an idle server (no autovacuum after the bulk appends).
    std::vector<Wakeup> wakes;
    for (int w : s.watchers) wakes.push_back(wakeup(conninfo, w, s.wakeups));

    struct Row {
      int writers;
      Stats plain, raw, append;
    };
    std::vector<Row> rows;
    const int slices = quick ? 1 : s.slices;
    for (int w : s.writers) {
      // Side by side on the same database: the ceiling and the append alternate in slices.
      db::Pool pool(conninfo, static_cast<std::size_t>(w), "bench");
      {
        std::vector<db::Pool::Lease> warm;  // open every pool connection before timing
        for (int i = 0; i < w; ++i) warm.push_back(pool.acquire());
      }
      auto slice = s.seconds / slices;
      auto run = [w](int k) { return std::to_string(w) + "-" + std::to_string(k); };
      auto skip = [&](const char* side) { return !s.only.empty() && s.only != side; };
      auto st = alternate(slices, {[&](int) { return skip("ceiling") ? Stats{} : plain_insert(conninfo, w, slice); },
                                   [&](int k) { return skip("events-insert") ? Stats{} : raw_events_insert(conninfo, w, slice, run(k)); },
                                   [&](int k) { return skip("append") ? Stats{} : append(pool, w, slice, run(k)); }});
      rows.push_back({w, std::move(st[0]), std::move(st[1]), std::move(st[2])});
    }
    pg.stop();

    bool append_goal = true, wake_goal = false;
    fmt::print("\nAppend throughput: one event per transaction, fsync on. The ceiling inserts the same row into a\n"
               "table with only a primary key (BEGIN; INSERT; COMMIT); `ratio` (the goal) is append / ceiling.\n"
               "`events INSERT` puts the row straight into the event log (its indexes, no checks): append /\n"
               "events INSERT is what the append's lock, checks and wake-up cost.\n");
    fmt::print("{:>8} | {:>14} {:>9} {:>9} | {:>14} | {:>14} {:>9} {:>9} | {:>6} {:>12}\n", "writers", "ceiling rows/s",
               "p50 ms", "p99 ms", "events INSERT", "append ev/s", "p50 ms", "p99 ms", "ratio", "vs events");
    Json jrows = Json::array();
    for (const auto& r : rows) {
      double ratio = r.plain.rate() > 0 ? r.append.rate() / r.plain.rate() : 0;
      double vs_events = r.raw.rate() > 0 ? r.append.rate() / r.raw.rate() : 0;
      append_goal = append_goal && ratio >= 0.7;
      fmt::print("{:>8} | {:>14.0f} {:>9.2f} {:>9.2f} | {:>14.0f} | {:>14.0f} {:>9.2f} {:>9.2f} | {:>5.2f}x {:>11.2f}x\n",
                 r.writers, r.plain.rate(), r.plain.p50_ms, r.plain.p99_ms, r.raw.rate(), r.append.rate(),
                 r.append.p50_ms, r.append.p99_ms, ratio, vs_events);
      auto side = [](const Stats& st) {
        return Json{{"per_second", st.rate()},
                    {"ops", st.ops},
                    {"p50_ms", st.p50_ms},
                    {"p99_ms", st.p99_ms},
                    {"client_cpu_us_per_op", st.per_op_us(st.client_cpu)},
                    {"server_cpu_us_per_op", st.per_op_us(st.server_cpu)},
                    {"idle_share", st.share(st.idle_cpu)},
                    {"steal_share", st.share(st.steal_cpu)},
                    {"notifies_per_second", st.seconds > 0 ? static_cast<double>(st.notifies) / st.seconds : 0}};
      };
      jrows.push_back({{"writers", r.writers},
                       {"plain_insert", side(r.plain)},
                       {"append", side(r.append)},
                       {"events_insert", side(r.raw)},
                       {"ratio", ratio},
                       {"ratio_vs_events_insert", vs_events}});
    }
    fmt::print("\nWhere the CPU went, per row or event: microseconds of CPU in this process (the client: its\n"
               "threads, libpqxx, the pool and the doorbell) and in the rest of the machine (PostgreSQL and the\n"
               "kernel's work for it); the machine's idle share, and the share the hypervisor stole (noise).\n"
               "NOTIFY/s: the wake-ups the append's doorbell sent (one covers every commit before it).\n");
    fmt::print("{:>8} | {:>17} {:>11} | {:>17} {:>11} | {:>17} {:>11} | {:>8}\n", "writers", "ceiling cli/srv",
               "idle/steal", "ev INSERT cli/srv", "idle/steal", "append cli/srv", "idle/steal", "NOTIFY/s");
    for (const auto& r : rows) {
      auto cell = [](const Stats& st) {
        return fmt::format("{:>8.0f}/{:<8.0f} {:>4.0f}%/{:>4.0f}%", st.per_op_us(st.client_cpu),
                           st.per_op_us(st.server_cpu), 100 * st.share(st.idle_cpu), 100 * st.share(st.steal_cpu));
      };
      fmt::print("{:>8} | {} | {} | {} | {:>8.0f}\n", r.writers, cell(r.plain), cell(r.raw), cell(r.append),
                 r.append.seconds > 0 ? static_cast<double>(r.append.notifies) / r.append.seconds : 0);
    }
    fmt::print("\nNOTIFY -> long-poll watcher wake-up (append commit returned -> watch answer received).\n"
               "The goal is on one watcher; more watchers (all in this process, on the same cores) show the fan-out cost.\n");
    fmt::print("{:>8} | {:>8} {:>9} {:>9} {:>9}\n", "watchers", "samples", "p50 ms", "p99 ms", "max ms");
    Json jwakes = Json::array();
    for (const auto& w : wakes) {
      if (w.watchers == 1) wake_goal = w.p99_ms < 5.0 && w.samples == s.wakeups;
      fmt::print("{:>8} | {:>8} {:>9.2f} {:>9.2f} {:>9.2f}\n", w.watchers, w.samples, w.p50_ms, w.p99_ms, w.max_ms);
      jwakes.push_back({{"watchers", w.watchers}, {"samples", w.samples}, {"p50_ms", w.p50_ms}, {"p99_ms", w.p99_ms},
                        {"max_ms", w.max_ms}});
    }
    fmt::print("\nGoals: append >= 0.7x plain INSERT: {}; wake-up p99 < 5 ms: {}{}\n", append_goal ? "met" : "NOT met",
               wake_goal ? "met" : "NOT met", quick ? " (quick run: not meaningful)" : "");
    Json out = {{"benchmark", "event_log"},
                {"quick", quick},
                {"seconds_per_measurement", s.seconds},
                {"cpus", std::thread::hardware_concurrency()},
                {"append", jrows},
                {"wakeup", jwakes},
                {"goals", {{"append_ratio_min", 0.7}, {"append_met", append_goal}, {"wakeup_p99_ms_max", 5.0},
                           {"wakeup_met", wake_goal}}}};
    std::ofstream(s.json_path) << out.dump(2) << "\n";
    fmt::print("JSON written to {}\n", s.json_path);
  } catch (const std::exception& e) {
    std::cerr << "event_log_bench: " << e.what() << "\n";
    rc = 1;
  }
  std::filesystem::remove_all(root);
  return rc;
}
