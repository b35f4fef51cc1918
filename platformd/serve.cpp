#include "platformd/serve.h"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <memory>
#include <thread>

#include "engine/db.h"
#include "engine/error.h"
#include "engine/listener.h"
#include "engine/signal.h"
#include "engine/version.h"
#include "projections/runner.h"
#include "reconcilers/host_liveness.h"
#include "reconcilers/scheduler.h"

namespace platform::daemon {

int serve(const ServeOptions& options) {
  // Signals are taken by sigwait below, never by a worker thread.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto has = [&](const char* role) {
    return std::find(options.roles.begin(), options.roles.end(), role) != options.roles.end();
  };
  Signal wake;
  // The address pools as configured now (allocations already made stay where they are); a bad one stops
  // the start before anything runs.
  if (!options.pools.ipv6.empty() || !options.pools.ipv4.empty() || !options.pools.instance.empty()) {
    try {
      db::Pool pool(options.conninfo, 1, "platformd-pools");
      pool.transact([&](pqxx::work& tx) { api::configure_pools(tx, options.pools); });
    } catch (const PlatformError& e) {
      spdlog::error("{} ({})", e.error().message, e.error().hint);
      return 2;
    }
  }

  boost::asio::io_context io;
  Listener listener(io, options.conninfo, "platform_events", [&wake] { wake.notify(); });
  listener.start();
  std::thread io_thread([&io] {
    auto guard = boost::asio::make_work_guard(io);
    io.run();
  });

  std::vector<std::unique_ptr<projections::Runner>> runners;
  std::vector<std::thread> runner_threads;
  if (has("projections")) {
    for (auto& p : projections::all()) {
      projections::RunnerOptions ro;
      ro.conninfo = options.conninfo;
      ro.runner_id = "platformd:" + std::to_string(::getpid());
      ro.pause_before_commit = options.projection_pause;
      runners.push_back(std::make_unique<projections::Runner>(std::move(p), ro, &wake));
    }
    for (auto& r : runners) runner_threads.emplace_back([&r] { r->run(); });
  }

  std::unique_ptr<reconcilers::HostLiveness> liveness;
  std::unique_ptr<reconcilers::Scheduler> scheduler;
  std::thread liveness_thread, scheduler_thread;
  if (has("reconcilers")) {
    liveness = std::make_unique<reconcilers::HostLiveness>(options.conninfo, options.host_grace);
    liveness_thread = std::thread([&liveness] { liveness->run(); });
    reconcilers::SchedulerOptions so;
    so.conninfo = options.conninfo;
    so.cpu_ratio = options.cpu_ratio;
    so.log_retention = options.log_retention;
    scheduler = std::make_unique<reconcilers::Scheduler>(so, &wake);
    scheduler_thread = std::thread([&scheduler] { scheduler->run(); });
  }
  auto stop_reconcilers = [&] {
    if (liveness) liveness->stop();
    if (scheduler) scheduler->stop();
    if (liveness_thread.joinable()) liveness_thread.join();
    if (scheduler_thread.joinable()) scheduler_thread.join();
  };

  std::unique_ptr<api::Server> server;
  if (has("api")) {
    server = std::make_unique<api::Server>(options.api, options.conninfo, wake);
    try {
      server->start();
    } catch (const std::exception& e) {
      spdlog::error("cannot listen on {}:{}: {}", options.api.address, options.api.port, e.what());
      stop_reconcilers();
      for (auto& r : runners) r->stop();
      for (auto& t : runner_threads) t.join();
      listener.stop();
      io.stop();
      io_thread.join();
      return 1;
    }
    spdlog::info("api listening on http://{}:{}", options.api.address, server->port());
  }
  std::string roles;
  for (const auto& r : options.roles) roles += (roles.empty() ? "" : ",") + r;
  spdlog::info("platformd {} serving (roles: {})", version_line(), roles);

  int sig = 0;
  sigwait(&set, &sig);
  spdlog::info("received {}, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
  if (server) server->stop();
  stop_reconcilers();
  for (auto& r : runners) r->stop();
  for (auto& t : runner_threads) t.join();
  listener.stop();
  io.stop();
  io_thread.join();
  return 0;
}

}  // namespace platform::daemon
