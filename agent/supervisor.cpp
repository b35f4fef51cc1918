#include "agent/supervisor.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <csignal>
#include <filesystem>
#include <iostream>

#include "agent/files.h"
#include "agent/health.h"
#include "agent/restart.h"
#include "engine/duration.h"
#include "engine/error.h"

namespace platform::agent {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

Assignment Assignment::from_json(const Json& j) {
  Assignment a;
  a.id = j.at("id").get<std::string>();
  a.name = j.at("name").get<std::string>();
  const auto& img = j.at("image");
  a.image = oci::parse_image_ref(img.at("registry").get<std::string>() + "/" + img.at("repository").get<std::string>() +
                                 "@" + img.at("digest").get<std::string>());
  a.process = manifest::process_from_json(j.at("process").get<std::string>(), j.value("process_spec", Json::object()));
  a.cpu = j.at("cpu").get<double>();
  a.memory_mib = j.at("memory_mib").get<std::int64_t>();
  const Json env = j.value("env", Json::object());  // a named copy: items() of a temporary would dangle
  for (const auto& [k, v] : env.items()) a.env[k] = v.get<std::string>();
  a.secrets = j.value("secrets", false);
  a.run = j.value("desired", "run") == "run";
  a.desired_reason = j.value("desired_reason", "");
  a.restarts = j.value("restarts", 0);
  a.state = j.value("state", "");
  a.address = j.value("address", "");
  return a;
}

std::string run_id(const std::string& instance_id, int attempt) { return fmt::format("{}-r{}", instance_id, attempt); }

std::optional<std::pair<std::string, int>> parse_run_id(const std::string& id) {
  auto dash = id.rfind("-r");
  if (dash == std::string::npos || dash == 0 || dash + 2 >= id.size() || id.size() - dash > 8) return std::nullopt;
  const auto digits = id.substr(dash + 2);
  if (digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::make_pair(id.substr(0, dash), std::stoi(digits));
}

InstanceSupervisor::InstanceSupervisor(Assignment a, SupervisorDeps deps, std::optional<std::string> adopt)
    : a_(std::move(a)), deps_(std::move(deps)), run_(std::move(adopt)) {
  attempt_ = a_.restarts;
  if (run_) attempt_ = std::max(attempt_, parse_run_id(*run_)->second);
  if (!a_.run) request_stop(a_.desired_reason, true);
  thread_ = std::thread([this] { run(); });
}

InstanceSupervisor::~InstanceSupervisor() {
  detach();
  if (thread_.joinable()) thread_.join();
}

void InstanceSupervisor::request_stop(const std::string& reason, bool drain, milliseconds max_grace) {
  std::lock_guard lock(mu_);
  grace_cap_ = std::min(grace_cap_, max_grace);
  if (stopping_) return;
  stop_reason_ = reason.empty() ? "asked to stop" : reason;
  drain_ = drain;
  stopping_ = true;
}

std::string InstanceSupervisor::drain_first() {
  {
    std::lock_guard lock(mu_);
    if (!drain_ || !deps_.drain || !run_ || a_.address.empty()) return "";
  }
  const auto asked = Clock::now();
  const auto deadline = asked + deps_.drain_timeout;
  std::string why;
  while (!detached_) {
    try {
      auto answer = deps_.drain(a_.id);
      why = answer.value("why", "");
      if (answer.value("drained", true)) {
        const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - asked).count();
        return fmt::format("{} (asked for {} ms)", why, ms);
      }
    } catch (const std::exception& e) {
      return std::string("not drained: asking the control plane failed (") + e.what() + ")";
    }
    if (Clock::now() >= deadline)
      return fmt::format("not drained within {} ms: {}", deps_.drain_timeout.count(), why);
    std::this_thread::sleep_for(milliseconds(50));
  }
  return "";
}

void InstanceSupervisor::detach() { detached_ = true; }

void InstanceSupervisor::report(const std::string& type, Json data) {
  data["name"] = a_.name;
  deps_.outbox->add(a_.id, type, std::move(data));
}

void InstanceSupervisor::track_logs() {
  tail_.emplace(a_.id, *run_, deps_.runtime->stdout_path(*run_), deps_.runtime->stderr_path(*run_));
  next_ship_ = Clock::now() + milliseconds(1000);
}

void InstanceSupervisor::ship_logs(bool final) {
  if (!tail_ || !deps_.ship_logs) return;
  for (int attempt = 0; attempt < (final ? 5 : 1);) {
    auto lines = tail_->read(final);
    if (lines.empty()) return;
    try {
      deps_.ship_logs(lines);
      tail_->commit();
      ship_failed_ = false;
    } catch (const std::exception& e) {
      if (!ship_failed_) std::cerr << "platform-agent: shipping logs of " << a_.name << " failed: " << e.what() << " (retrying)\n";
      ship_failed_ = true;
      if (!final) return;  // the lines stay in the file: the next tick sends them
      ++attempt;
      std::this_thread::sleep_for(milliseconds(500));
    }
  }
}

ProbeResult InstanceSupervisor::exec_probe(const manifest::HealthCheck& check) {
  const auto start = Clock::now();
  auto res = deps_.runtime->exec(*run_, check.command, a_.env, milliseconds(check.timeout_ms));
  ProbeResult r;
  r.took = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  r.ok = !res.timed_out && res.exit_code == 0;
  std::string cmd;
  for (const auto& c : check.command) cmd += (cmd.empty() ? "" : " ") + c;
  auto first_line = res.output.substr(0, res.output.find('\n'));
  if (res.timed_out)
    r.error = fmt::format("exec check `{}` did not finish within {} ms", cmd, check.timeout_ms);
  else if (!r.ok)
    r.error = fmt::format("exec check `{}` exited with status {}{}", cmd, res.exit_code,
                          first_line.empty() ? "" : ": " + valid_utf8(first_line.substr(0, 200)));
  return r;
}

bool InstanceSupervisor::sleep_unless_stopping(milliseconds d) {
  for (auto end = Clock::now() + d; Clock::now() < end;) {
    if (stopping_ || detached_) return false;
    std::this_thread::sleep_for(std::min<milliseconds>(milliseconds(100), d));
  }
  return !stopping_ && !detached_;
}

bool InstanceSupervisor::start_run() {
  const auto id = run_id(a_.id, attempt_);
  std::string why;
  try {
    auto image = deps_.images->cached(a_.image.digest);
    if (!image) {
      report("InstancePulling", {{"image", a_.image.str()}, {"reason", "pulling " + a_.image.str()}});
      image = deps_.images->pull(a_.image);
    }
    InstanceSpec spec;
    spec.id = id;
    spec.rootfs = image->rootfs;
    spec.image_config = image->config;
    spec.command = a_.process.command;
    spec.env = a_.env;
    spec.memory_mib = a_.memory_mib;
    spec.cpu = a_.cpu;
    spec.address = a_.address;
    if (a_.secrets) {
      fs::create_directories(deps_.secrets_dir);
      ::chmod(deps_.secrets_dir.c_str(), 0700);
      spec.secrets_file = (fs::path(deps_.secrets_dir) / a_.id).string();
      write_atomically(spec.secrets_file, deps_.fetch_secrets(a_.id));
      ::chmod(spec.secrets_file.c_str(), 0600);
    }
    deps_.runtime->destroy(id);  // leftovers of a start that never reported
    deps_.runtime->start(spec);
    run_ = id;
    started_ = Clock::now();
    track_logs();
    report("InstanceStarted", {{"restarts", attempt_},
                               {"run", id},
                               {"runtime", deps_.runtime->name()},
                               {"image_digest", a_.image.digest},
                               {"health_check", a_.process.health.has_value()},
                               {"reason", attempt_ == 0 ? "started" : fmt::format("restart {}", attempt_)}});
    return true;
  } catch (const PlatformError& e) {
    why = e.error().message;
  } catch (const std::exception& e) {
    why = e.what();
  }
  deps_.runtime->destroy(id);
  // A start that fails counts as a failed run: the restart policy and its backoff apply.
  auto d = decide_restart(a_.process.restart, ExitStatus{1, 0, false}, attempt_, milliseconds(0), false);
  const auto reason = "could not start: " + why;
  report("InstanceStartFailed", {{"reason", reason}, {"run", id}});
  if (d.restart) {
    report("InstanceRestarting", {{"restarts", attempt_ + 1},
                                  {"delay_ms", d.delay.count()},
                                  {"reason", reason + "; " + d.when}});
    if (sleep_unless_stopping(d.delay)) ++attempt_;
  } else {
    const auto& policy = a_.process.restart;
    const bool out_of_attempts = policy.policy != "never" && policy.max_attempts > 0 && attempt_ >= policy.max_attempts;
    report("InstanceFailed",
           {{"reason", out_of_attempts ? fmt::format("{}; gave up after {} restarts (restart.max_attempts = {})", reason,
                                                     attempt_, policy.max_attempts)
                                       : reason + "; not retried (restart policy " + policy.policy + ")"}});
    given_up_ = true;
  }
  return false;
}

void InstanceSupervisor::after_exit(const ExitStatus& how, const std::string& unhealthy) {
  const auto ran_for = std::chrono::duration_cast<milliseconds>(Clock::now() - started_);
  report("InstanceExited", {{"exit_code", how.exit_code},
                            {"signal", how.signal},
                            {"oom", how.oom},
                            {"run", *run_},
                            {"ran_ms", ran_for.count()},
                            {"reason", unhealthy.empty() ? how.describe()
                                                         : "stopped after failing its health check (" + unhealthy + ")"}});
  ship_logs(true);  // what it wrote up to its end, also after a crash
  tail_.reset();
  deps_.runtime->destroy(*run_);
  run_.reset();
  if (stopping_ || detached_) return;
  // A process stopped for failing its health check counts as failed, whatever its exit status.
  ExitStatus judged = how;
  if (!unhealthy.empty() && judged.exit_code == 0 && judged.signal == 0) judged.signal = SIGTERM;
  auto d = decide_restart(a_.process.restart, judged, attempt_, ran_for, false);
  const auto prefix = unhealthy.empty() ? std::string() : "health check failed (" + unhealthy + "); ";
  if (d.restart) {
    report("InstanceRestarting", {{"restarts", attempt_ + 1}, {"delay_ms", d.delay.count()}, {"reason", prefix + d.reason}});
    if (sleep_unless_stopping(d.delay)) ++attempt_;
  } else {
    if (d.failed) report("InstanceFailed", {{"reason", prefix + d.reason}});
    given_up_ = true;  // failed, or done for good ("never" / "on-failure" after a clean exit)
  }
}

void InstanceSupervisor::run() {
  if (run_) track_logs();  // adopted: its files are read from the start (lines already stored are not stored again)
  if (run_ && a_.state != "running") {
    // Adopted, but the control plane never heard it started (the agent died before sending that).
    started_ = Clock::now();
    report("InstanceStarted", {{"restarts", attempt_}, {"run", *run_}, {"runtime", deps_.runtime->name()},
                               {"image_digest", a_.image.digest}, {"health_check", a_.process.health.has_value()},
                               {"reason", "adopted after an agent restart"}});
  } else if (run_) {
    started_ = Clock::now();
  }
  while (!stopping_ && !detached_) {
    try {
      supervise();
    } catch (const std::exception& e) {
      // E.g. the run's folder vanished under us: say so, and start it again by the restart policy.
      if (run_) {
        report("InstanceExited", {{"exit_code", -1}, {"signal", 0}, {"oom", false}, {"run", *run_},
                                  {"reason", std::string("lost track of the run: ") + e.what()}});
        ship_logs(true);
        tail_.reset();
        deps_.runtime->destroy(*run_);
        run_.reset();
      }
      sleep_unless_stopping(milliseconds(1000));
    }
  }
  if (stopping_ && !detached_) finish();
  finished_ = true;
}

void InstanceSupervisor::supervise() {
  while (!stopping_ && !detached_) {
    if (given_up_) {
      std::this_thread::sleep_for(milliseconds(100));
      continue;
    }
    if (!run_ && !start_run()) continue;
    std::optional<HealthTracker> tracker;
    if (a_.process.health) tracker.emplace(*a_.process.health);
    // Until the first verdict probe early and often (50, 100, 200, then every 300 ms), so an instance
    // that is up at once is seen healthy at once; then every interval.
    int starting_probes = 0;
    auto next_probe = Clock::now() + milliseconds(50);
    while (!stopping_ && !detached_) {
      const auto to_probe = std::chrono::duration_cast<milliseconds>(next_probe - Clock::now());
      if (auto how = deps_.runtime->wait(*run_, std::clamp(to_probe, milliseconds(10), milliseconds(200)))) {
        after_exit(*how, "");
        break;
      }
      if (tail_) tail_->observe();
      if (Clock::now() >= next_ship_) {
        ship_logs(false);
        next_ship_ = Clock::now() + milliseconds(1000);
      }
      if (!tracker || Clock::now() < next_probe) continue;
      const auto& check = *a_.process.health;
      ProbeResult r;
      if (check.type == "exec") {
        r = exec_probe(check);
      } else {
        auto target = deps_.runtime->probe_target(*run_);
        r = target ? probe(check, *target) : ProbeResult{false, "the process is not running", milliseconds(0)};
      }
      const auto before = tracker->state();
      const auto& now = tracker->record(r, std::chrono::duration_cast<milliseconds>(Clock::now() - started_));
      const auto soon = std::min(milliseconds(300), milliseconds(50 << std::min(++starting_probes, 3)));
      next_probe = Clock::now() + (now == "starting" ? soon : milliseconds(check.interval_ms));
      if (now == before) continue;
      if (now == "healthy") report("InstanceHealthy", {{"reason", ""}, {"run", *run_}});
      if (now == "unhealthy") {
        report("InstanceUnhealthy", {{"reason", tracker->last_error()}, {"run", *run_}});
        auto how = deps_.runtime->stop(*run_, stop_grace());
        after_exit(how, tracker->last_error());
        break;
      }
    }
  }
}

milliseconds InstanceSupervisor::stop_grace() const {
  const auto wanted = a_.process.stop_timeout_ms ? milliseconds(*a_.process.stop_timeout_ms) : deps_.stop_grace;
  std::lock_guard lock(mu_);
  return std::min(wanted, grace_cap_);
}

void InstanceSupervisor::finish() {
  {
    std::string reason;
    {
      std::lock_guard lock(mu_);
      reason = stop_reason_;
    }
    Json data = {{"reason", reason}};
    if (run_) {
      // New connections stop coming before SIGTERM: the edge on this host leaves the instance out first.
      if (auto drained = drain_first(); !drained.empty()) data["drain"] = drained;
      try {
        const auto grace = stop_grace();
        auto how = deps_.runtime->stop(*run_, grace);
        data["exit_code"] = how.exit_code;
        data["signal"] = how.signal;
        data["exit"] = how.describe();
        if (how.signal == SIGKILL && !how.oom) {  // it did not exit on SIGTERM in time: how long it had, and why
          const char* why = a_.process.stop_timeout_ms ? "its stop_timeout" : "the default; stop_timeout in platform.toml";
          if (a_.process.stop_timeout_ms && grace < milliseconds(*a_.process.stop_timeout_ms))
            why = "its stop_timeout, cut short while the agent shuts down";
          data["exit"] = how.describe() + " after " + format_duration(grace) + " without exiting on SIGTERM (" + why + ")";
        }
      } catch (const std::exception& e) {
        data["exit"] = std::string("could not be stopped cleanly: ") + e.what();
      }
      ship_logs(true);
      tail_.reset();
      deps_.runtime->destroy(*run_);
    }
    std::error_code ec;
    fs::remove(fs::path(deps_.secrets_dir) / a_.id, ec);
    report("InstanceStopped", std::move(data));
  }
}

}  // namespace platform::agent
