// platform status | instance list|describe | scale | logs | wait (no target: the env's rollout). See
// docs/instances.md and docs/logs.md.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <iostream>
#include <map>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "cli/cli.h"
#include "engine/duration.h"
#include "engine/ids.h"

namespace platform::cli {
namespace {

std::string health_of(const Json& i) {
  const auto h = i.value("health", "");
  return h == "none" ? "-" : h;
}

std::string state_of(const Json& i) {
  auto s = i.value("state", "");
  if (i.value("desired", "") == "stop" && s != "stopped" && s != "lost") s += " (stopping)";
  else if (i.value("restart_pending", false) && s != "stopped" && s != "lost") s += " (to restart)";
  return s;
}

// "stderr: echo: exiting with status 3": a line an instance wrote, kept to one terminal line (control
// characters, an app's colours among them, become spaces).
std::string output_text(const Json& l) {
  const auto message = l.value("message", "");
  auto text = utf8_prefix(message, 160);
  for (auto& c : text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return l.value("stream", "") + ": " + text + (text.size() < message.size() ? "…" : "");
}

// What the instance a problem line is about ("web-4: restarting: …") wrote last, from the status's
// instances; "" when it wrote nothing (or the line is about a process).
std::string problem_output(const Json& status, const std::string& problem) {
  const auto name = problem.substr(0, problem.find(':'));
  for (const auto& i : status.value("instances", Json::array()))
    if (i.value("name", "") == name) {
      auto it = i.find("last_output");
      return it != i.end() && it->is_object() ? output_text(*it) : std::string();
    }
  return "";
}

void print_instance_rows(const Json& instances) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& i : instances)
    rows.push_back({i.value("name", ""), i["release"].value("name", ""), i["host"].value("name", ""), state_of(i),
                    health_of(i), std::to_string(i.value("restarts", 0)), short_duration(i.value("age_seconds", 0)),
                    i.value("id", "")});
  print_table({"NAME", "RELEASE", "HOST", "STATE", "HEALTH", "RESTARTS", "AGE", "ID"}, rows);
}

void print_status(const Json& st) {
  const auto& rel = st["release"];
  std::cout << "env      " << st.value("path", "") << "\n";
  if (rel.is_null()) {
    std::cout << "release  none yet (platform deploy)\n";
  } else {
    std::cout << "release  " << rel.value("name", "") << "  " << rel.value("image", "") << "  "
              << rel.value("digest", "").substr(0, 19) << "…\n";
  }
  std::cout << "phase    " << st.value("phase", "") << "\n\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : st["processes"])
    rows.push_back({p.value("process", ""), std::to_string(p.value("desired", 0)) + (p.value("scaled", false) ? " (scaled)" : ""),
                    std::to_string(p.value("current", 0)), std::to_string(p.value("healthy", 0)),
                    std::to_string(p.value("outdated", 0)), std::to_string(p.value("stopping", 0)),
                    p.contains("memory_mib") ? fmt::format("{:g} cpu, {} MiB", p.value("cpu", 0.0), p.value("memory_mib", 0))
                                             : std::string("-")});
  print_table({"PROCESS", "DESIRED", "CURRENT", "HEALTHY", "OUTDATED", "STOPPING", "SIZE"}, rows);
  if (!st["instances"].empty()) {
    std::cout << "\n";
    print_instance_rows(st["instances"]);
  }
  if (!st["problems"].empty()) {
    std::cout << "\nnot converging:\n";
    for (const auto& p : st["problems"]) {
      std::cout << "  " << p.get<std::string>() << "\n";
      const auto out = problem_output(st, p.get<std::string>());
      if (!out.empty()) std::cout << "    last output, " << out << "\n";
    }
  }
  if (!st.value("traffic", Json::array()).empty()) {
    std::cout << "\ntraffic not served:\n";
    for (const auto& p : st["traffic"]) std::cout << "  " << p.get<std::string>() << "\n";
  }
}

// One line per event of an instance: when, what, and why.
std::string event_line(const Json& e) {
  const auto& d = e["data"];
  const auto type = e.value("type", "");
  std::string what = d.value("reason", "");
  if (type == "InstancePlaced") what = "on host " + d.value("host_name", "") + ": " + what;
  if (type == "InstanceStarted") what = fmt::format("{} (restart count {})", what, d.value("restarts", 0));
  if (type == "InstanceStopped" && d.contains("drain")) what += "; first " + d.value("drain", "");
  if (type == "InstanceStopped" && d.contains("exit")) what += "; " + d.value("exit", "");
  return fmt::format("{}  {:<24} {}", e.value("at", "").substr(0, 19), type, what);
}

void print_instance(const Json& i, const std::string& env_flag) {
  std::cout << "instance  " << i.value("name", "") << " (" << i.value("id", "") << ")\n";
  std::cout << "process   " << i.value("process", "") << ", release " << i["release"].value("name", "") << ", host "
            << i["host"].value("name", "") << ", " << fmt::format("{:g} cpu, {} MiB", i.value("cpu", 0.0), i.value("memory_mib", 0))
            << "\n";
  std::cout << "state     " << state_of(i) << ", health " << health_of(i) << ", restarts " << i.value("restarts", 0)
            << (i.value("state_reason", "").empty() ? "" : ": " + i.value("state_reason", "")) << "\n";
  std::cout << "desired   " << i.value("desired", "") << ": " << i.value("desired_reason", "") << "\n";
  if (!i.value("address", "").empty())
    std::cout << "address   " << i.value("address", "") << " (private: the edge reaches its ports here)\n";
  if (!i["last_exit"].is_null())
    std::cout << "last exit " << i["last_exit"].value("reason", "") << " at " << i["last_exit"].value("reported_at", "")
              << "\n";
  std::cout << "\nwhat happened, in order:\n";
  for (const auto& e : i["events"]) std::cout << "  " << event_line(e) << "\n";
  const auto output = i.value("last_output", Json::array());
  if (output.is_array() && !output.empty()) {
    std::cout << "\nwhat it wrote last (its latest run; all of it: platform instance logs " << i.value("name", "")
              << env_flag << "):\n";
    for (const auto& l : output) std::cout << "  " << l.value("at", "").substr(0, 19) << "  " << output_text(l) << "\n";
  }
}

struct ScaleArgs {
  std::vector<std::string> targets;  // web=3, or web (with --memory / --cpu)
  std::int64_t memory = 0;
  double cpu = 0;
};

Json scale_body(const ScaleArgs& a) {
  Json processes = Json::object();
  for (const auto& t : a.targets) {
    const auto eq = t.find('=');
    const auto name = t.substr(0, eq);
    Json o = Json::object();
    if (eq != std::string::npos) {
      const auto n = t.substr(eq + 1);
      if (n.empty() || n.size() > 3 || n.find_first_not_of("0123456789") != std::string::npos)
        throw PlatformError(ErrorCode::invalid_request, "\"" + t + "\": the count must be a whole number from 0 to 100",
                            "e.g. platform scale web=3 worker=1");
      o["count"] = std::stoi(n);
    }
    if (a.memory > 0) o["memory_mib"] = a.memory;
    if (a.cpu > 0) o["cpu"] = a.cpu;
    if (name.empty() || o.empty())
      throw PlatformError(ErrorCode::invalid_request, "\"" + t + "\" says nothing to change",
                          "Give PROCESS=COUNT, or a process with --memory MIB or --cpu N.");
    processes[name] = o;
  }
  return {{"processes", processes}};
}

struct LogsArgs {
  bool follow = false;
  int tail = -1;  // -1: not asked
  std::string process, instance, since, until, source = "all";
};

std::string log_line(const Json& l) {
  return fmt::format("{} {:<10} {:<8} {}", l.value("at", ""), l.value("instance", ""), l.value("stream", ""),
                     l.value("message", ""));
}

// The options `platform logs` and `platform instance logs` share.
void add_logs_options(CLI::App* cmd, LogsArgs& a) {
  cmd->add_flag("-f,--follow", a.follow, "Keep printing new lines until Ctrl-C (NDJSON with -o json)");
  cmd->add_option("-n,--tail", a.tail, "Only the newest N lines (at most 5000), then with -f what comes next");
  cmd->add_option("--since", a.since, "From a duration ago (10m) or a UTC time");
  cmd->add_option("--until", a.until, "Up to a duration ago or a UTC time");
  cmd->add_option("--source", a.source, "app (stdout/stderr), system (platform events) or all")->capture_default_str();
}

// Reads the env's logs page by page; with --follow keeps polling for new lines until Ctrl-C.
void run_logs(const Globals& g, const LogsArgs& a) {
  if (a.tail != -1 && (a.tail < 1 || a.tail > 5000))
    throw PlatformError(ErrorCode::invalid_request, "--tail must be from 1 to 5000",
                        "e.g. --tail 100 for the newest 100 lines; --since 1h for a time window.");
  if (a.source != "app" && a.source != "system" && a.source != "all")
    throw PlatformError(ErrorCode::invalid_request, "--source must be app, system or all",
                        "app: what the instances wrote; system: the platform's events about them.");
  auto s = open_session(g);
  auto client = s.client();
  std::string query = "?limit=1000&source=" + a.source;
  if (!a.process.empty()) query += "&process=" + api::url_encode(a.process);
  if (!a.instance.empty()) query += "&instance=" + api::url_encode(a.instance);
  if (!a.since.empty()) query += "&since=" + api::url_encode(a.since);
  if (!a.until.empty()) query += "&until=" + api::url_encode(a.until);
  const bool one_document = g.format() == Format::json && !a.follow;
  Json all = Json::array();
  std::string cursor;
  // --tail: the first page is the newest lines; without --follow it is the only one.
  bool tail_page = a.tail > 0;
  while (!interrupted()) {
    const auto target = s.env_path() + "/logs" + query +
                        (tail_page ? "&tail=" + std::to_string(a.tail)
                                   : cursor.empty() ? "" : "&after=" + api::url_encode(cursor));
    // Once following, a restarting API is waited out; the cursor resumes where the last page ended.
    auto page = a.follow && !cursor.empty() ? call_through_outage(g, "logs", [&] { return client.call("GET", target); })
                                            : client.call("GET", target);
    cursor = page.value("next", cursor);
    for (const auto& l : page["lines"]) {
      if (one_document) all.push_back(l);
      else if (g.format() == Format::table) std::cout << log_line(l) << "\n";
      else std::cout << l.dump() << "\n";
    }
    std::cout << std::flush;
    if (std::exchange(tail_page, false) && !a.follow) break;
    if (!page["lines"].empty()) continue;  // more may be waiting
    if (!a.follow) break;
    for (int i = 0; i < 10 && !interrupted(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (a.follow) throw PlatformError(ErrorCode::interrupted, "interrupted", "");
  if (one_document) print_json({{"lines", all}, {"next", cursor}});
}

// "web 1 of 2 healthy, 2 outdated; worker 1 of 1 healthy": where a rollout stands, per process.
std::string rollout_progress(const Json& status) {
  std::string out;
  for (const auto& p : status.value("processes", Json::array())) {
    std::string line = fmt::format("{} {} of {} healthy", p.value("process", ""), p.value("healthy", 0), p.value("desired", 0));
    if (const int n = p.value("outdated", 0)) line += fmt::format(", {} outdated", n);
    if (const int n = p.value("stopping", 0)) line += fmt::format(", {} stopping", n);
    out += (out.empty() ? "" : "; ") + line;
  }
  return out;
}

// j[key] when it is an object, else {} (a status without a release has "release": null).
Json object_at(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? *it : Json::object();
}

// The way back from a rollout that does not come up: which older release still serves (its healthy
// instances keep the traffic until the new ones are healthy) and the rollback to it, or, when none
// does, where to pick one. " Release v6 still serves (web-1, web-2 healthy): go back to it with …".
std::string way_back(const Json& status, const std::string& env_flag) {
  const auto release = object_at(status, "release");
  const auto current = release.value("name", "");
  if (release.value("number", std::int64_t{0}) <= 1) return "";  // the env's first: nothing to go back to
  std::map<std::int64_t, std::pair<std::string, std::vector<std::string>>> serving;  // by release number
  for (const auto& i : status.value("instances", Json::array())) {
    const auto rel = object_at(i, "release");
    if (rel.value("name", "") == current || i.value("state", "") != "running" || i.value("health", "") != "healthy")
      continue;
    auto& [name, instances] = serving[rel.value("number", std::int64_t{0})];
    name = rel.value("name", "");
    instances.push_back(i.value("name", ""));
  }
  if (serving.empty())
    return " No older release is serving; pick one to go back to with `platform releases list" + env_flag +
           "`, then `platform rollback RELEASE" + env_flag + "`.";
  const auto& [name, instances] = serving.rbegin()->second;  // the newest that serves
  return fmt::format(" Release {} still serves ({} healthy); go back to it with `platform rollback {}{}`.", name,
                     fmt::join(instances, ", "), name, env_flag);
}

// "category: app …" when instances of the env's release are being restarted (they exit or fail their
// checks): a timeout then is the app's, not the platform's being slow.
std::string crash_looping(const Json& status) {
  const auto current = object_at(status, "release").value("name", "");
  for (const auto& i : status.value("instances", Json::array()))
    if (object_at(i, "release").value("name", "") == current && i.value("state", "") == "restarting") {
      auto it = i.find("last_output");
      const auto said = it != i.end() && it->is_object()
                            ? "; " + i.value("name", "") + " last wrote, on " + output_text(*it)
                            : std::string();
      return "category: app (instances of release " + current + " exit or fail their checks, and are being restarted" +
             said + "). ";
    }
  return "";
}

// Whether the env's release has fewer healthy instances than it asks for in some process.
bool release_not_up(const Json& status) {
  for (const auto& p : status.value("processes", Json::array()))
    if (p.value("healthy", 0) < p.value("desired", 0)) return true;
  return false;
}

}  // namespace

void describe_instance(const Globals& g, const Session& s, const std::string& which) {
  auto i = s.client().call("GET", s.env_path() + "/instances/" + api::url_encode(which));
  if (g.format() != Format::table) return print_json(i);
  print_instance(i, s.env_flags());
}

// `platform wait` without a target: until the env runs its release as desired, all healthy (exit 0); a
// failed instance ends it with exit 1 and an unplaceable one with exit 5, each naming what and why.
void run_wait_converged(const Globals& g, const std::string& timeout_text) {
  auto s = open_session(g);
  auto client = s.client();
  auto timeout = parse_duration(timeout_text);
  if (!timeout)
    throw PlatformError(ErrorCode::invalid_request, "--timeout \"" + timeout_text + "\" is not a duration", "e.g. 5m");
  auto st = wait_env_converged(g, client, {s.env_path(), s.env_flags(), s.need_env()},
                               std::chrono::steady_clock::now() + *timeout, timeout_text);
  if (g.format() != Format::table) return print_json(st);
  std::cout << "converged: release " << st["release"].value("name", "") << ", every process at its count and healthy"
            << refused_edge(st) << "\n";
}

void add_rollout_wait(CLI::App* cmd, RolloutWait& w) {
  cmd->add_flag("--wait", w.wait,
                "Then follow the rollout to its end and until the edges serve it, as `platform wait` does (exit 1 "
                "failed, 5 unplaceable, 6 a port cannot listen, 4 timeout)");
  cmd->add_option("--timeout", w.timeout, "With --wait: give up after this long (exit 4)")->capture_default_str();
}

Json wait_env_converged(const Globals& g, api::Client& client, const EnvTarget& env,
                        std::chrono::steady_clock::time_point deadline, const std::string& timeout_text) {
  const auto path = env.api_path + "/status?traffic=false";  // the rollout alone
  const auto& env_flag = env.flags;
  std::string last_phase, last_progress;
  std::set<std::string> last_problems;
  std::map<std::string, std::string> said_output;  // instance name -> the last output line printed for it
  while (!interrupted()) {
    auto st = call_through_outage(g, "wait", [&] { return client.call("GET", path); }, deadline);
    const auto phase = st.value("phase", "");
    if (phase != last_phase && g.format() == Format::table) note(g, "status: " + phase);
    last_phase = phase;
    auto problems = st.value("problems", Json::array());
    const auto first = problems.empty() ? std::string() : problems[0].get<std::string>();
    // While it moves, what changed (on stderr, in every output format): the counts, and each problem line
    // that is new since the last look (every instance's, not only the first's), a few at a time.
    auto progress = rollout_progress(st);
    std::set<std::string> seen;
    for (const auto& p : problems) seen.insert(p.get<std::string>());
    if (phase == "progressing") {
      if (progress != last_progress && !progress.empty()) note(g, "  " + progress);
      constexpr int kNewLines = 5;
      int shown = 0, more = 0;
      for (const auto& p : problems) {
        const auto& line = p.get_ref<const std::string&>();
        if (last_problems.count(line)) continue;
        if (shown < kNewLines) {
          note(g, "  " + line);
          ++shown;
          // Then what that instance wrote last, unless that was said already: usually the reason.
          const auto out = problem_output(st, line);
          const auto name = line.substr(0, line.find(':'));
          if (!out.empty() && said_output[name] != out) note(g, "    last output, " + out);
          said_output[name] = out;
        } else {
          ++more;
        }
      }
      if (more > 0) note(g, fmt::format("  ... and {} more: platform status{}", more, env_flag));
    }
    last_progress = std::move(progress);
    last_problems = std::move(seen);
    Json details = Json::array();  // error details are objects with a text (engine/error_details.h)
    for (const auto& p : problems) details.push_back({{"text", p}});
    if (phase == "converged") {
      // Converged is not yet served: the edges take the new backends (and ports) a moment later.
      auto served = wait_traffic_served(g, client, env, deadline, timeout_text, [](const std::string&) { return true; });
      st["traffic"] = served.value("traffic", Json::array());
      st["edges_pending"] = served.value("edges_pending", Json::array());
      st["unreachable"] = served.value("unreachable", Json::array());
      return st;
    }
    if (phase == "no_release")
      throw PlatformError(ErrorCode::precondition_failed, "env " + env.name + " has no release to converge on",
                          "Deploy first: platform deploy" + env_flag);
    if (phase == "failed") {
      auto failed = first;  // the first instance that gave up (others may still be restarting)
      for (const auto& p : problems)
        if (p.get<std::string>().find(": failed: ") != std::string::npos) {
          failed = p.get<std::string>();
          break;
        }
      auto name = failed.substr(0, failed.find(':'));
      const auto out = problem_output(st, failed);
      throw DetailedError({ErrorCode::failed, "rollout failed: " + failed,
                           "category: app (the instance exits or fails its checks" +
                               (out.empty() ? std::string() : "; it last wrote, on " + out) +
                               "). See `platform instance describe " +
                               name + env_flag + "` and `platform instance logs " + name + env_flag + "`." +
                               way_back(st, env_flag)},
                          details);
    }
    if (phase == "unschedulable")
      throw DetailedError({ErrorCode::capacity, "rollout cannot be placed: " + first,
                           "category: placement. Free capacity (platform scale), or add a host "
                           "(platform host join-token); `platform status" + env_flag + "` shows the rest."},
                          details);
    if (std::chrono::steady_clock::now() >= deadline)
      throw DetailedError({ErrorCode::timed_out, "env " + env.name + " did not converge within " + timeout_text +
                                                     (first.empty() ? "" : ": " + first),
                           crash_looping(st) + "See `platform status" + env_flag + "` for what is still moving." +
                               (release_not_up(st) ? way_back(st, env_flag) : std::string())},
                          details);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  throw PlatformError(ErrorCode::interrupted, "interrupted", "");
}

Json wait_traffic_served(const Globals& g, api::Client& client, const EnvTarget& env,
                         std::chrono::steady_clock::time_point deadline, const std::string& timeout_text,
                         const std::function<bool(const std::string& endpoint)>& must_listen) {
  std::string said;
  while (!interrupted()) {
    auto st = call_through_outage(g, "wait", [&] { return client.call("GET", env.api_path + "/status"); }, deadline);
    const auto pending = st.value("edges_pending", Json::array());
    if (pending.empty()) {
      // Every running edge has taken the change: what it could not bind is on record now.
      Json details = Json::array();
      std::string first;
      for (const auto& n : st.value("not_listening", Json::array())) {
        const bool route = n.value("kind", "") == "route";
        if (!must_listen(route ? std::string() : n.value("name", ""))) continue;
        std::string what = "endpoint " + n.value("name", "");
        if (route) {
          what = "route";
          for (const auto& h : n.value("hostnames", Json::array())) what += " " + h.get<std::string>();
          what += ": the shared TLS listener";
        }
        auto line = fmt::format("{}{} {} is not listening on host {}: {}", what, route ? "" : ":",
                                address_port(n.value("address", ""), n.value("port", 0)), n.value("host", ""),
                                n.value("error", ""));
        if (first.empty()) first = line;
        details.push_back({{"text", line}});
      }
      if (details.size() == 1) details = Json::array();  // the message says it already
      if (!first.empty())
        throw DetailedError({ErrorCode::precondition_failed, first,
                             "Another process on that host holds the address and port, or the address is not there: "
                             "free it, or move the endpoint to another port (the shared TLS listener: an operator's "
                             "platformd --edge-tls-listen). `platform exposure` shows what each edge serves."},
                            details);
      for (const auto& p : st.value("traffic", Json::array())) note(g, "traffic: " + p.get<std::string>());
      return st;
    }
    std::string hosts = pending.size() == 1 ? "the edge on host " : "the edges on hosts ";
    for (std::size_t i = 0; i < pending.size(); ++i) hosts += (i ? ", " : "") + pending[i].get<std::string>();
    if (hosts != said) note(g, "  waiting for " + hosts + " to serve the change");
    said = hosts;
    if (std::chrono::steady_clock::now() >= deadline)
      throw DetailedError({ErrorCode::timed_out, hosts + " did not serve the change within " + timeout_text,
                           "`platform exposure` shows what each edge serves; the edge's log on that host says why."},
                          Json::array());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw PlatformError(ErrorCode::interrupted, "interrupted", "");
}

void add_served_wait(CLI::App* cmd, RolloutWait& w) {
  cmd->add_flag("--wait", w.wait,
                "Then wait until every running edge serves the change (exit 6 when a port cannot listen, 4 timeout)");
  cmd->add_option("--timeout", w.timeout, "With --wait: give up after this long (exit 4)")->capture_default_str();
}

namespace {

// The change's receipt, then `follow` until the deadline. An error while following says in its hint that
// the change itself was made, and which operation; `-o json` prints one document: the receipt with what
// `follow` answered as `key`.
void receipt_then(const Globals& g, Session& s, const Json& receipt, const RolloutWait& w, const std::string& key,
                  const std::function<Json(api::Client&, const EnvTarget&, std::chrono::steady_clock::time_point)>& follow,
                  const std::function<std::string(const Json&)>& done) {
  if (!w.wait) return print_receipt(g, receipt);
  auto timeout = parse_duration(w.timeout);
  if (!timeout) throw PlatformError(ErrorCode::invalid_request, "--timeout \"" + w.timeout + "\" is not a duration", "e.g. 5m");
  if (g.format() == Format::table) print_receipt(g, receipt);  // the change first, then how it goes
  auto client = s.client();
  Json st;
  try {
    st = follow(client, {s.env_path(), s.env_flags(), s.need_env()}, std::chrono::steady_clock::now() + *timeout);
  } catch (const DetailedError& e) {
    auto err = e.error();
    err.hint += " The change itself was made: operation " + receipt.value("operation_id", "") + ".";
    throw DetailedError(err, e.details());
  }
  if (g.format() != Format::table) {
    Json out = receipt;
    out[key] = st;
    if (g.format() == Format::ndjson) std::cout << out.dump() << "\n" << std::flush;
    else print_json(out);
    return;
  }
  if (!g.quiet) std::cout << done(st) << "\n";
}

}  // namespace

void print_receipt_and_wait(const Globals& g, Session& s, const Json& receipt, const RolloutWait& w) {
  receipt_then(
      g, s, receipt, w, "rollout",
      [&](api::Client& client, const EnvTarget& env, std::chrono::steady_clock::time_point deadline) {
        return wait_env_converged(g, client, env, deadline, w.timeout);
      },
      [](const Json& st) {
        return "converged: release " + st["release"].value("name", "") + ", every process at its count and healthy" +
               refused_edge(st);
      });
}

void print_receipt_and_wait_served(const Globals& g, Session& s, const Json& receipt, const RolloutWait& w,
                                   const std::function<bool(const std::string& endpoint)>& must_listen) {
  receipt_then(
      g, s, receipt, w, "served",
      [&](api::Client& client, const EnvTarget& env, std::chrono::steady_clock::time_point deadline) {
        return wait_traffic_served(g, client, env, deadline, w.timeout, must_listen);
      },
      [](const Json& st) { return "served: every running edge serves the change" + refused_edge(st); });
}

void add_instance_commands(CLI::App& app, Globals& g) {
  auto* status = app.add_subcommand("status", "The env: release, desired vs current per process, instances, problems");
  status->callback([&g] {
    auto s = open_session(g);
    auto st = s.client().call("GET", s.env_path() + "/status");
    if (g.format() != Format::table) return print_json(st);
    print_status(st);
  });

  auto* instance = app.add_subcommand("instance", "An env's instances");
  instance->require_subcommand(1);
  auto all = std::make_shared<bool>(false);
  auto* list = instance->add_subcommand("list", "Instances of the env (--all: stopped ones too)");
  list->add_flag("--all", *all, "Include stopped and lost instances");
  list->callback([&g, all] {
    auto s = open_session(g);
    auto out = s.client().call("GET", s.env_path() + "/instances" + (*all ? "?all=true" : ""));
    if (g.format() == Format::json) return print_json(out);
    if (g.format() == Format::ndjson) {
      for (const auto& i : out["instances"]) std::cout << i.dump() << "\n";
      return;
    }
    print_instance_rows(out["instances"]);
  });
  auto which = std::make_shared<std::string>();
  auto* describe = instance->add_subcommand("describe", "One instance and why: placed, started, exited, restarted, stopped");
  describe->add_option("instance", *which, "Instance name (web-3) or ID")->required();
  describe->callback([&g, which] {
    auto s = open_session(g);
    describe_instance(g, s, *which);
  });

  add_events_verb(instance, g, "instance", "platform instance events web-3 -f --project shop --app api --env prod");

  auto ila = std::make_shared<LogsArgs>();
  auto* ilogs = instance->add_subcommand("logs", "What one instance wrote and the platform's events about it (as platform "
                                                 "logs --instance NAME)");
  ilogs->add_option("instance", ila->instance, "Instance name (web-3) or ID")->required();
  add_logs_options(ilogs, *ila);
  ilogs->footer("Example:\n  platform instance logs web-3 -n 100 -f --project shop --app api --env prod");
  ilogs->callback([&g, ila] { run_logs(g, *ila); });

  auto restart_one = std::make_shared<std::string>();
  auto* irestart = instance->add_subcommand(
      "restart", "Replace one instance by a new one; it stops once the new one is healthy (`platform restart`: all of them)");
  irestart->add_option("instance", *restart_one, "Instance name (web-3) or ID")->required();
  auto irw = std::make_shared<RolloutWait>();
  add_rollout_wait(irestart, *irw);
  irestart->callback([&g, restart_one, irw] {
    auto s = open_session(g);
    print_receipt_and_wait(
        g, s,
        s.client().call("POST", s.env_path() + "/instances/" + api::url_encode(*restart_one) + "/restart", Json::object(),
                        new_id("idem")),
        *irw);
  });

  auto la = std::make_shared<LogsArgs>();
  auto* logs = app.add_subcommand("logs", "An env's logs: what its instances wrote and the platform's events about them");
  logs->footer(
      "Examples:\n"
      "  platform logs -f --project shop --app api --env prod\n"
      "  platform logs -n 50 -f --env prod                # the newest 50 lines, then new ones\n"
      "  platform logs --since 10m --instance web-2 --source all --env prod   # with the platform's events\n"
      "  platform -o ndjson logs --since 1h --env prod | jq -r .message");
  add_logs_options(logs, *la);
  logs->add_option("--process", la->process, "Only this process");
  logs->add_option("--instance", la->instance, "Only this instance (name or ID)");
  logs->callback([&g, la] { run_logs(g, *la); });

  auto sa = std::make_shared<ScaleArgs>();
  auto* scale = app.add_subcommand("scale", "Set how many instances a process runs, or its memory/CPU (e.g. web=3)");
  scale->footer(
      "Examples:\n"
      "  platform scale web=3 worker=1 --project shop --app api --env prod\n"
      "  platform scale web --memory 512 --cpu 0.5 --env prod   # resized instances replace the old ones");
  scale->add_option("targets", sa->targets, "PROCESS=COUNT ... (or PROCESS with --memory/--cpu)")->required();
  scale->add_option("--memory", sa->memory, "Memory limit in MiB for the named processes")->check(CLI::Range(16, 262144));
  scale->add_option("--cpu", sa->cpu, "CPUs for the named processes")->check(CLI::Range(0.01, 64.0));
  auto sw = std::make_shared<RolloutWait>();
  add_rollout_wait(scale, *sw);
  scale->callback([&g, sa, sw] {
    auto s = open_session(g);
    auto body = scale_body(*sa);
    print_receipt_and_wait(g, s, s.client().call("POST", s.env_path() + "/scale", body, new_id("idem")), *sw);
  });

  auto processes = std::make_shared<std::vector<std::string>>();
  auto* restart = app.add_subcommand(
      "restart", "Replace the env's running instances with new ones, each once its replacement is healthy (a rolling restart)");
  restart->footer(
      "Examples:\n"
      "  platform restart --project shop --app api --env prod --wait   # every process; --wait: until all are replaced\n"
      "  platform restart worker --env prod                             # only the worker instances");
  restart->add_option("processes", *processes, "PROCESS ... (default: every process of the env's release)");
  auto rw = std::make_shared<RolloutWait>();
  add_rollout_wait(restart, *rw);
  restart->callback([&g, processes, rw] {
    auto s = open_session(g);
    print_receipt_and_wait(g, s,
                           s.client().call("POST", s.env_path() + "/restart", Json{{"processes", *processes}}, new_id("idem")),
                           *rw);
  });
}

}  // namespace platform::cli
