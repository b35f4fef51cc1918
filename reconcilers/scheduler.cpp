#include "reconcilers/scheduler.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include "api/instances.h"
#include "api/logs.h"
#include "api/releases.h"
#include "engine/db.h"
#include "engine/event_store.h"
#include "engine/ids.h"
#include "reconcilers/placement.h"
#include "reconcilers/rollout.h"

namespace platform::reconcilers {
namespace {

const std::string kActor = "platformd:scheduler";

struct Row {  // an instance not yet stopped
  std::string id, name, org_id, app_id, env_id, process, release_id, host_id, desired, state, health;
  int ordinal = 0;
  double cpu = 0;
  std::int64_t memory_mib = 0;
  bool restart = false;  // placed before its process's last `platform restart`
};

struct EnvRow {
  std::string env_id, org_id, release_id;  // release_id empty: nothing to run
  Json scale;
  bool deleted = false;
  std::string spec_at;  // core.env_runtime.updated_at as text: which version of the spec this pass saw
  std::string name;
};

Json meta(const std::string& org_id, const std::string& kind, const std::string& id, const std::string& parent,
          const std::string& name) {
  Json m = {{"actor", kActor}, {"org_id", org_id}, {"resource_kind", kind}, {"resource_id", id}, {"parent_id", parent}};
  if (!name.empty()) m["resource_name"] = name;
  return m;
}

void append(pqxx::work& tx, const std::string& stream, std::optional<std::int64_t> expected, const std::string& type,
            Json data, Json metadata) {
  events::append(tx, stream, expected, {{uuid_to_string(new_uuid_v7()), type, 1, std::move(data), std::move(metadata)}});
}

void request_stop(pqxx::work& tx, const Row& i, const std::string& reason) {
  tx.exec_params(
      "UPDATE core.instances SET desired = 'stop', desired_reason = $2, assign_version = nextval('core.assignment_versions')"
      " WHERE id = $1",
      i.id, reason);
  append(tx, api::instance_stream(i.id), std::nullopt, "InstanceStopRequested",
         {{"instance_id", i.id}, {"name", i.name}, {"process", i.process}, {"host_id", i.host_id}, {"reason", reason}},
         meta(i.org_id, "instance", i.id, i.env_id, i.name));
}

std::vector<Row> active_instances(pqxx::transaction_base& tx) {
  std::vector<Row> out;
  for (const auto& r : tx.exec(
           "SELECT i.id, i.name, i.org_id, i.app_id, i.env_id, i.process, i.release_id, i.host_id, i.desired, i.state,"
           " i.health, i.ordinal, i.cpu, i.memory_mib, " + api::sql_restart_due("i", "rt") +
           " FROM core.instances i LEFT JOIN core.env_runtime rt ON rt.env_id = i.env_id"
           " WHERE i.state NOT IN ('stopped', 'lost') ORDER BY i.id"))
    out.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<std::string>(),
                   r[4].as<std::string>(), r[5].as<std::string>(), r[6].as<std::string>(), r[7].as<std::string>(),
                   r[8].as<std::string>(), r[9].as<std::string>(), r[10].as<std::string>(), r[11].as<int>(),
                   r[12].as<double>(), r[13].as<std::int64_t>(), r[14].as<bool>()});
  return out;
}

struct HostRow {
  HostCapacity capacity;
  std::string last_seen;
};

std::map<std::string, HostRow> read_hosts(pqxx::transaction_base& tx) {
  std::map<std::string, HostRow> out;
  for (const auto& r : tx.exec("SELECT h.id, h.name, l.state, l.report::text, " + db::sql_rfc3339("l.last_seen") +
                               " FROM core.hosts h JOIN core.host_liveness l ON l.host_id = h.id")) {
    HostRow h;
    h.capacity.id = r[0].as<std::string>();
    h.capacity.name = r[1].as<std::string>();
    h.capacity.up = r[2].as<std::string>() == "up";
    auto report = Json::parse(r[3].as<std::string>());
    h.capacity.cpus = report["capacity"].value("cpus", 0.0);
    h.capacity.memory_mib = report["capacity"].value("memory_mib", std::int64_t{0});
    const auto runtime = report.contains("runtime") ? report["runtime"] : Json::object();
    if (runtime.contains("instance_overhead_mib") && runtime["instance_overhead_mib"].is_number_integer())
      h.capacity.instance_overhead_mib = std::clamp<std::int64_t>(runtime["instance_overhead_mib"].get<std::int64_t>(), 0, 65536);
    if (runtime.value("name", "none") == "none")
      h.capacity.unavailable = "has no runtime (" + runtime.value("reason", std::string("none reported")).substr(0, 200) + ")";
    h.last_seen = r[4].as<std::string>();
    out[h.capacity.id] = std::move(h);
  }
  return out;
}

std::vector<EnvRow> read_envs(pqxx::transaction_base& tx) {
  std::vector<EnvRow> out;
  for (const auto& r : tx.exec("SELECT rt.env_id, rt.org_id, coalesce(rt.release_id, ''), rt.scale::text,"
                               " res.deleted_at IS NOT NULL, rt.updated_at::text, res.name FROM core.env_runtime rt"
                               " JOIN core.resources res ON res.id = rt.env_id ORDER BY rt.env_id"))
    out.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(),
                   Json::parse(r[3].as<std::string>()), r[4].as<bool>(), r[5].as<std::string>(), r[6].as<std::string>()});
  return out;
}

InstanceView view_of(const Row& r) {
  return {r.id, r.name, r.process, r.release_id, r.ordinal, r.desired == "run", r.state, r.health};
}

PlacementRequest request_of(const std::string& env_id, const std::string& process, double cpu, std::int64_t mem) {
  return {env_id + "/" + process, cpu, mem, ""};
}

}  // namespace

struct Scheduler::ReleaseCache {
  std::map<std::string, api::Release> by_id;
};

Scheduler::Scheduler(SchedulerOptions options, Signal* wake)
    : options_(std::move(options)), pool_(std::make_unique<db::Pool>(options_.conninfo, 1, "platform-scheduler")),
      releases_(std::make_unique<ReleaseCache>()), wake_(wake) {}

Scheduler::~Scheduler() = default;

Scheduler::PassResult Scheduler::pass() {
  PassResult result;
  auto& pool = *pool_;
  std::vector<Row> rows;
  std::map<std::string, HostRow> hosts;
  std::vector<EnvRow> envs;
  std::set<std::string> with_unschedulable;  // envs whose records may need clearing
  pool.read([&](pqxx::transaction_base& tx) {
    rows = active_instances(tx);
    hosts = read_hosts(tx);
    envs = read_envs(tx);
    for (const auto& r : tx.exec("SELECT DISTINCT env_id FROM core.unschedulable"))
      with_unschedulable.insert(r[0].as<std::string>());
    return 0;
  });

  // Instances on hosts that are down are lost: replaced below like any missing instance.
  std::vector<Row> live;
  std::vector<const Row*> lost;
  for (const auto& r : rows) {
    auto h = hosts.find(r.host_id);
    if (h != hosts.end() && !h->second.capacity.up) lost.push_back(&r);
    else live.push_back(r);
  }
  if (!lost.empty())
    pool.transact([&](pqxx::work& tx) {
      for (const auto* r : lost) {
        const auto& h = hosts[r->host_id];
        const auto reason = fmt::format("host {} is down (no heartbeat since {})", h.capacity.name, h.last_seen);
        tx.exec_params(
            "UPDATE core.instances SET state = 'lost', desired = 'stop', desired_reason = $2, state_reason = $2,"
            " state_at = now(), assign_version = nextval('core.assignment_versions') WHERE id = $1",
            r->id, reason);
        append(tx, api::instance_stream(r->id), std::nullopt, "InstanceLost",
               {{"instance_id", r->id}, {"name", r->name}, {"process", r->process}, {"host_id", r->host_id},
                {"reason", reason}},
               meta(r->org_id, "instance", r->id, r->env_id, r->name));
      }
      return 0;
    });
  result.lost = static_cast<int>(lost.size());

  std::vector<HostCapacity> capacities;
  for (const auto& [id, h] : hosts) capacities.push_back(h.capacity);
  Placer placer(std::move(capacities), options_.cpu_ratio);
  for (const auto& r : live)
    if (r.state != "failed") placer.record(r.host_id, request_of(r.env_id, r.process, r.cpu, r.memory_mib));

  std::map<std::string, std::vector<const Row*>> by_env;
  for (const auto& r : live) by_env[r.env_id].push_back(&r);
  for (const auto& env : envs) {
    const auto& mine = by_env[env.env_id];
    std::optional<api::Release> release;
    if (!env.deleted && !env.release_id.empty()) {
      auto& cache = releases_->by_id;
      auto it = cache.find(env.release_id);
      if (it == cache.end())
        if (auto r = pool.read([&](pqxx::transaction_base& tx) { return api::release_by_id(tx, env.release_id); }))
          it = cache.emplace(env.release_id, std::move(*r)).first;
      if (it != cache.end()) release = it->second;
    }
    if (!release && mine.empty()) continue;
    const auto label = release ? "v" + std::to_string(release->number) : std::string();
    auto sizes = release ? api::process_sizes(release->manifest, env.scale) : std::map<std::string, api::ProcessSize>{};
    std::vector<InstanceView> views;
    std::map<std::string, const Row*> by_id;
    for (const auto* r : mine) {
      views.push_back(view_of(*r));
      auto size = sizes.find(r->process);
      views.back().resized = size != sizes.end() && size->second.differs_from(r->memory_mib, r->cpu);
      views.back().restart = r->restart;
      by_id[r->id] = r;
    }
    RolloutPlan plan;
    if (release) {
      std::vector<ProcessTarget> targets;
      for (const auto& [name, s] : sizes) targets.push_back({name, s.count});
      plan = plan_rollout(release->id, label, targets, views);
    } else {
      for (const auto& v : views)
        if (v.desired_run)
          plan.stop.push_back({v.id, v.name, v.process, env.deleted ? "env deleted" : "env has no release to run"});
    }
    // Converged and nothing recorded as unschedulable: no transaction at all (the usual pass).
    if (plan.stop.empty() && plan.place.empty() && !with_unschedulable.count(env.env_id)) continue;
    pool.transact([&](pqxx::work& tx) {
      for (const auto& s : plan.stop) request_stop(tx, *by_id.at(s.instance_id), s.reason);
      result.stopped += static_cast<int>(plan.stop.size());
      std::map<std::string, std::pair<int, std::string>> unplaced;  // process -> (missing, why)
      for (const auto& [process, n] : plan.place) {
        const auto& size = sizes.at(process);
        auto ordinal = tx.exec_params("SELECT coalesce(max(ordinal), 0) FROM core.instances WHERE env_id = $1 AND process = $2",
                                      env.env_id, process)[0][0].as<int>();
        bool has_old = false;
        for (const auto& v : views) has_old |= v.process == process && v.release_id != release->id && v.desired_run;
        const auto reason = has_old ? fmt::format("rollout of release {}", label)
                                    : fmt::format("release {} runs {} {} instance{}", label, size.count, process,
                                                  size.count == 1 ? "" : "s");
        for (int k = 0; k < n; ++k) {
          auto placed = placer.place(request_of(env.env_id, process, size.cpu, size.memory_mib));
          if (!placed.host_id) {
            unplaced[process] = {n - k, placed.reason};
            for (const auto& s : make_room(release->id, label, process, size.count, views)) {
              const auto& victim = *by_id.at(s.instance_id);
              if (!placer.would_fit_after(victim.host_id, request_of(env.env_id, process, victim.cpu, victim.memory_mib),
                                          request_of(env.env_id, process, size.cpu, size.memory_mib)))
                continue;  // stopping it would not make enough room: keep it serving
              request_stop(tx, victim, s.reason);
              ++result.stopped;
            }
            break;
          }
          const auto id = new_id("ins");
          const auto name = fmt::format("{}-{}", process, ++ordinal);
          const auto& host = hosts.at(*placed.host_id).capacity;
          // Its private address comes from the instance pool (IPAM), when one is configured; a full pool
          // leaves the rest unplaced, with why.
          const auto free = tx.exec(
              "SELECT EXISTS (SELECT 1 FROM core.ip_pools WHERE kind = 'instance'),"
              " coalesce(host(core.next_free_address('instance')), '')")[0];
          const auto address = free[1].as<std::string>();
          if (free[0].as<bool>() && address.empty()) {
            unplaced[process] = {n - k, "no private address is left for it: the instance address pool is full "
                                        "(an operator widens platformd serve --instance-pool)"};
            --ordinal;
            break;
          }
          tx.exec_params(
              "INSERT INTO core.instances (id, name, ordinal, org_id, app_id, env_id, process, release_id, host_id, cpu,"
              " memory_mib, desired, desired_reason, assign_version, address)"
              " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'run', $12, nextval('core.assignment_versions'),"
              " nullif($13, '')::inet)",
              id, name, ordinal, env.org_id, release->app_id, env.env_id, process, release->id, host.id, size.cpu,
              size.memory_mib, reason, address);
          append(tx, api::instance_stream(id), -1, "InstancePlaced",
                 {{"instance_id", id}, {"name", name}, {"env_id", env.env_id}, {"process", process},
                  {"release_id", release->id}, {"release_number", release->number}, {"host_id", host.id},
                  {"host_name", host.name}, {"cpu", size.cpu}, {"memory_mib", size.memory_mib}, {"address", address},
                  {"reason", reason}},
                 meta(env.org_id, "instance", id, env.env_id, name));
          ++result.placed;
        }
      }
      // What cannot be placed: recorded with why, and an event each time the reason changes.
      auto known = tx.exec_params(
          "SELECT process, reason, missing, coalesce(spec_at::text, '') FROM core.unschedulable WHERE env_id = $1",
          env.env_id);
      for (const auto& k : known)
        if (!unplaced.count(k[0].as<std::string>()))
          tx.exec_params("DELETE FROM core.unschedulable WHERE env_id = $1 AND process = $2", env.env_id,
                         k[0].as<std::string>());
      for (const auto& [process, u] : unplaced) {
        ++result.unschedulable;
        bool same = false;
        for (const auto& k : known)
          same |= k[0].as<std::string>() == process && k[1].as<std::string>() == u.second && k[2].as<int>() == u.first;
        bool current = false;  // the verdict on record is about the spec this pass saw
        for (const auto& k : known) current |= k[0].as<std::string>() == process && k[3].as<std::string>() == env.spec_at;
        if (same && current) continue;
        tx.exec_params(
            "INSERT INTO core.unschedulable (env_id, process, release_id, missing, reason, spec_at)"
            " VALUES ($1, $2, $3, $4, $5, $6::timestamptz)"
            " ON CONFLICT (env_id, process) DO UPDATE SET release_id = $3, missing = $4, reason = $5, spec_at = $6::timestamptz,"
            " since = CASE WHEN core.unschedulable.reason = $5 THEN core.unschedulable.since ELSE now() END",
            env.env_id, process, release->id, u.first, u.second, env.spec_at);
        if (same) continue;  // the same reason, now about the current spec: no new event
        append(tx, "scheduler-" + env.env_id, std::nullopt, "ProcessUnschedulable",
               {{"env_id", env.env_id}, {"process", process}, {"release_id", release->id}, {"missing", u.first},
                {"reason", u.second}},
               meta(env.org_id, "env", env.env_id, "", env.name));
      }
      return 0;
    });
  }
  return result;
}

void Scheduler::run() {
  while (!stopping_) {
    try {
      std::unique_ptr<pqxx::connection> lease;
      if (options_.use_lease) {
        lease = db::connect(options_.conninfo, "platform-scheduler-lease");
        for (;;) {
          pqxx::nontransaction tx(*lease);
          if (tx.exec("SELECT pg_try_advisory_lock(hashtextextended('reconciler:scheduler', 0))")[0][0].as<bool>()) break;
          if (stopping_) return;
          wake_->wait_for(wake_->generation(), std::chrono::seconds(1));
        }
        spdlog::info("scheduler: lease acquired");
      }
      int busy = 0;
      auto next_expiry = std::chrono::steady_clock::now();
      while (!stopping_) {
        const auto seen = wake_->generation();
        if (std::chrono::steady_clock::now() >= next_expiry) {  // log retention rides along, once a minute
          auto removed = pool_->transact([&](pqxx::work& tx) { return api::expire_logs(tx, options_.log_retention); });
          if (removed > 0) spdlog::info("logs: removed {} lines older than {} h", removed, options_.log_retention.count());
          next_expiry = std::chrono::steady_clock::now() + std::chrono::minutes(1);
        }
        auto r = pass();
        if (r.changed())
          spdlog::info("scheduler: placed {}, stopping {}, lost {}, unschedulable {}", r.placed, r.stopped, r.lost,
                       r.unschedulable);
        if (lease && !lease->is_open()) throw pqxx::broken_connection("scheduler lease connection lost");
        if (r.changed() && ++busy < 10) continue;  // a pass sees its own effects at once
        busy = 0;
        wake_->wait_for(seen, options_.period);
      }
    } catch (const std::exception& e) {
      if (stopping_) break;
      spdlog::warn("scheduler: {}; retrying in 1 s", e.what());
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
}

void Scheduler::stop() {
  stopping_ = true;
  if (wake_) wake_->notify();
}

}  // namespace platform::reconcilers
