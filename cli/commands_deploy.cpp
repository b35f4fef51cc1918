// platform deploy|diff|rollback and platform releases list|describe (docs/releases.md).
#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli/cli.h"
#include "engine/ids.h"

namespace platform::cli {
namespace {

struct DeployArgs {
  std::string image, manifest, plan_file, apply_file, idempotency_key;
  bool detach = false;
  bool dry_run = false;  // a plan or a diff: nothing is allocated
  bool yes = false;  // accept the IPv4 add-on's price when the manifest asks for it
};

// The request body for a deploy or a dry run: the image if given, the manifest if given or found in
// the current folder (validated here first, so problems are reported with this file's path). With no
// --app, the manifest's app is the target.
Json deploy_body(Session& s, const Globals& g, const DeployArgs& a) {
  Json body = Json::object();
  if (!a.image.empty()) body["image"] = a.image;
  std::string path = a.manifest;
  if (path.empty() && std::filesystem::exists("platform.toml")) path = "platform.toml";
  if (!path.empty()) {
    auto m = load_manifest(path);
    body["manifest"] = read_manifest_file(path);
    body["manifest_file"] = std::filesystem::path(path).filename().string();
    if (g.app.empty()) s.ctx.app = m.app;
    bool wants_ipv4 = false;
    for (const auto& e : m.endpoints) wants_ipv4 |= e.ipv4;
    if (wants_ipv4 && !a.dry_run)
      if (auto price = accept_ipv4_price(s, g, a.yes, "the manifest asks for the IPv4 add-on (ipv4 = true): env " +
                                                           s.need_env() + " gets a dedicated IPv4 address"))
        body["accept_ipv4_price_cents_month"] = *price;
  } else {
    note(g, "no platform.toml here and no --manifest: the current release's manifest is used");
  }
  return body;
}

std::string mark(const std::string& action) { return action == "add" ? "+ " : action == "remove" ? "- " : "~ "; }

void print_changes(const Json& diff) {
  if (diff.empty()) {
    std::cout << "no changes\n";
    return;
  }
  for (const auto& d : diff) std::cout << mark(d.value("action", "")) << d.value("summary", "") << "\n";
}

void print_plan(const Globals& g, const Json& out) {
  const auto& plan = out["plan"];
  const auto& cur = out["current_release"];
  std::cout << "env      " << plan.value("env", "") << "\n";
  std::cout << "current  "
            << (cur.is_object() ? cur.value("name", "") + " (" + cur.value("id", "") + ") " + cur.value("image", "")
                                : std::string("no release yet"))
            << "\n";
  std::cout << "image    " << plan["image"].value("ref", "") << " → " << plan["image"].value("digest", "") << "\n";
  std::cout << "versions config v" << plan.value("config_version", 0) << ", secrets v"
            << plan.value("secrets_version", 0) << "\n";
  print_changes(out.value("diff", Json::array()));
  for (const auto& m : out.value("missing", Json::array())) note(g, "missing: " + m.value("text", ""));
  for (const char* kind : {"config", "secrets"})
    for (const auto& k : out["not_delivered"].value(kind, Json::array()))
      note(g, std::string("not delivered: ") + kind + " " + k.get<std::string>() +
                  " is set in the env but not declared in platform.toml");
  for (const auto& x : out.value("stranded_endpoints", Json::array())) note(g, "no backends: " + x.value("text", ""));
  std::cout << std::flush;
}

Json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw PlatformError(ErrorCode::invalid_request, "cannot read " + path, "Check the path.");
  auto j = Json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw PlatformError(ErrorCode::invalid_request, path + " is not a JSON plan",
                        "Make one with `platform deploy --plan FILE`.");
  return j;
}

// --image and --manifest, shared by deploy and diff.
void add_source_options(CLI::App* cmd, DeployArgs& a) {
  cmd->add_option("--image", a.image, "[registry/]repository[:tag][@sha256:digest] (default: the current image)");
  cmd->add_option("--manifest", a.manifest, "platform.toml path (default: ./platform.toml, else the current one)");
}

void add_deploy(CLI::App& app, Globals& g) {
  auto a = std::make_shared<DeployArgs>();
  auto* deploy = app.add_subcommand(
      "deploy", "Deploy an image and platform.toml to an env: a new release (or none when nothing changed)");
  add_source_options(deploy, *a);
  deploy->footer(
      "Examples:\n"
      "  platform deploy --image registry.example.com/shop/api:1.4 --project shop --app api --env prod\n"
      "  platform deploy --plan plan.json --image ...:1.5 --env prod   # review it, then:\n"
      "  platform deploy --apply plan.json --yes\n"
      "  platform deploy --image ...:1.5 --env prod --wait               # and follow the rollout to its end");
  deploy->add_option("--plan", a->plan_file, "Write a plan (what would change, pinned to digests) to FILE; deploy nothing");
  deploy->add_option("--apply", a->apply_file, "Deploy exactly the plan in FILE (refused if anything moved since)");
  deploy->add_flag("--detach", a->detach, "Answer as soon as the deploy is recorded, without waiting for it to apply");
  deploy->add_flag("--yes", a->yes, "Accept the IPv4 add-on's monthly price when the manifest or plan asks for it (ipv4 = true)");
  deploy->add_option("--idempotency-key", a->idempotency_key, "Make a retried request safe");
  auto w = std::make_shared<RolloutWait>();
  add_rollout_wait(deploy, *w);
  deploy->callback([&g, a, w] {
    if (!a->apply_file.empty() && (!a->image.empty() || !a->manifest.empty() || !a->plan_file.empty()))
      throw PlatformError(ErrorCode::invalid_request, "--apply deploys a plan as it is",
                          "Give --apply FILE alone, or make a new plan with --image/--manifest and --plan.");
    auto s = open_session(g);
    std::map<std::string, std::string> headers;
    headers["Idempotency-Key"] = a->idempotency_key.empty() ? new_id("idem") : a->idempotency_key;
    if (a->detach) headers["Prefer"] = "respond-async";
    if (!a->apply_file.empty()) {
      auto file = read_json_file(a->apply_file);
      Json plan = file.contains("plan") ? file["plan"] : file;
      // The plan names its env ("org/O/project/P/app/A/env/E"); flags that are given still win, and
      // the server refuses a plan applied to another env.
      auto where = path_names(plan.value("env", ""));
      if (g.org.empty() && where.count("org")) s.ctx.org = where["org"];
      if (g.project.empty() && where.count("project")) s.ctx.project = where["project"];
      if (g.app.empty() && where.count("app")) s.ctx.app = where["app"];
      if (g.env.empty() && where.count("env")) s.ctx.env = where["env"];
      return print_receipt_and_wait(g, s,
                                    post_accepting_ipv4(s, g, a->yes, s.env_path() + "/deploys", Json{{"plan", plan}},
                                                        headers, std::chrono::seconds(120)),
                                    *w);
    }
    a->dry_run = !a->plan_file.empty();
    auto body = deploy_body(s, g, *a);
    if (!a->plan_file.empty()) {
      body["dry_run"] = true;
      auto out = s.client().call("POST", s.env_path() + "/deploys", body, headers, std::chrono::seconds(120));
      std::ofstream f(a->plan_file, std::ios::binary | std::ios::trunc);
      f << out.dump(2) << "\n";
      if (!f)
        throw PlatformError(ErrorCode::invalid_request, "cannot write the plan to " + a->plan_file, "Check the path.");
      if (g.format() != Format::table) return print_json(out);
      print_plan(g, out);
      note(g, "plan written to " + a->plan_file + "; deploy it with `platform deploy --apply " + a->plan_file + "`");
      return;
    }
    print_receipt_and_wait(g, s, s.client().call("POST", s.env_path() + "/deploys", body, headers, std::chrono::seconds(120)),
                           *w);
  });
}

void add_diff(CLI::App& app, Globals& g) {
  auto a = std::make_shared<DeployArgs>();
  auto* diff = app.add_subcommand(
      "diff", "What a deploy would change in the env (exit 3 when something would change, 0 when nothing would)");
  add_source_options(diff, *a);
  diff->callback([&g, a] {
    auto s = open_session(g);
    a->dry_run = true;
    auto body = deploy_body(s, g, *a);
    body["dry_run"] = true;
    body["check_gates"] = false;
    auto out = s.client().call("POST", s.env_path() + "/deploys", body, std::map<std::string, std::string>{},
                               std::chrono::seconds(120));
    if (g.format() != Format::table) {
      print_json(out);
    } else {
      print_plan(g, out);
    }
    if (out.value("changed", true)) throw ExitWith{3};
  });
}

void add_rollback(CLI::App& app, Globals& g) {
  auto release = std::make_shared<std::string>();
  auto idem = std::make_shared<std::string>();
  auto yes = std::make_shared<bool>(false);
  auto* rb = app.add_subcommand(
      "rollback", "Point the env at a release it ran before: the previous one, or RELEASE (v3, 3 or rel_…)");
  rb->add_option("release", *release, "Release to return to (default: the one before the current)");
  rb->add_option("--idempotency-key", *idem, "Make a retried request safe");
  rb->add_flag("--yes", *yes, "Accept the IPv4 add-on's monthly price when the release asks for it (ipv4 = true)");
  auto w = std::make_shared<RolloutWait>();
  add_rollout_wait(rb, *w);
  rb->callback([&g, release, idem, yes, w] {
    auto s = open_session(g);
    Json body = Json::object();
    if (!release->empty()) body["release"] = *release;
    std::map<std::string, std::string> headers{{"Idempotency-Key", idem->empty() ? new_id("idem") : *idem}};
    print_receipt_and_wait(
        g, s, post_accepting_ipv4(s, g, *yes, s.env_path() + "/rollback", body, headers, std::chrono::seconds(30)), *w);
  });
}

std::string short_digest(const std::string& d) { return d.size() > 19 ? d.substr(0, 19) : d; }

void add_releases(CLI::App& app, Globals& g) {
  auto* releases = app.add_subcommand("releases", "An env's releases (immutable: image digest, manifest, versions)");
  releases->require_subcommand(1);
  auto limit = std::make_shared<int>(50);
  auto* list = releases->add_subcommand("list", "Releases, newest first; * marks the one the env runs");
  list->add_option("--limit", *limit, "At most this many (1-500)")->check(CLI::Range(1, 500));
  list->callback([&g, limit] {
    auto s = open_session(g);
    auto out = s.client().call("GET", s.env_path() + "/releases?limit=" + std::to_string(*limit));
    if (g.format() == Format::json) return print_json(out);
    if (g.format() == Format::ndjson) {
      for (const auto& r : out["releases"]) std::cout << r.dump() << "\n";
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : out["releases"])
      rows.push_back({std::string(r.value("current", false) ? "*" : "") + r.value("name", ""), r.value("id", ""),
                      r["image"].value("ref", ""), short_digest(r.value("image_digest", "")),
                      "v" + std::to_string(r.value("config_version", 0)) + "/v" +
                          std::to_string(r.value("secrets_version", 0)),
                      r.value("created_at", "")});
    print_table({"RELEASE", "ID", "IMAGE", "DIGEST", "CONFIG/SECRETS", "CREATED"}, rows);
  });
  auto pair = std::make_shared<std::vector<std::string>>();
  auto* rdiff = releases->add_subcommand(
      "diff", "What changed between two releases: diff [[FROM] TO] (TO: the current release; FROM: the release before "
              "TO); exit 3 when they differ");
  rdiff->add_option("releases", *pair, "[FROM] TO: v3, 3 or rel_…")->expected(0, 2);
  rdiff->footer(
      "Examples:\n"
      "  platform releases diff --project shop --app api --env prod         # what the current release changed\n"
      "  platform releases diff v7 --project shop --app api --env prod      # v6 -> v7: what the deploy of v7 changed\n"
      "  platform releases diff v5 v7 --project shop --app api --env prod   # v5 -> v7");
  rdiff->callback([&g, pair] {
    auto s = open_session(g);
    std::string to = pair->empty() ? "" : pair->back();
    if (to.empty()) {  // the release the env runs now
      const auto current = s.client().call("GET", s.env_path() + "/releases?limit=1")["current_release_id"];
      if (current.is_string()) to = current.get<std::string>();
      if (to.empty())
        throw PlatformError(ErrorCode::not_found, "the env runs no release yet", "Deploy first: platform deploy" + s.env_flags());
    }
    auto out = s.client().call("GET", s.env_path() + "/releases/" + api::url_encode(to) + "/diff" +
                                          (pair->size() == 2 ? "?from=" + api::url_encode(pair->front()) : ""));
    if (g.format() != Format::table) {
      print_json(out);
    } else {
      auto line = [](const Json& r) {
        return r.value("name", "") + " (" + r.value("id", "") + ") " + r.value("image", "") + ", " +
               short_digest(r.value("image_digest", "")) + ", created " + r.value("created_at", "").substr(0, 19);
      };
      std::cout << "from  " << (out["from"].is_object() ? line(out["from"]) : std::string("nothing: the env's first release"))
                << "\n"
                << "to    " << line(out["to"]) << "\n";
      print_changes(out.value("changes", Json::array()));
      std::cout << std::flush;
    }
    if (out.value("changed", false)) throw ExitWith{3};
  });

  auto which = std::make_shared<std::string>();
  auto* describe = releases->add_subcommand("describe", "One release: image, manifest, versions, delivered keys, history");
  describe->add_option("release", *which, "v3, 3 or rel_…")->required();
  describe->callback([&g, which] {
    auto s = open_session(g);
    describe_release(g, s, *which);
  });
  add_events_verb(releases, g, "release", "platform releases events v4 --project shop --app api --env prod");
}

}  // namespace

void describe_release(const Globals& g, const Session& s, const std::string& which) {
  auto r = s.client().call("GET", s.env_path() + "/releases/" + api::url_encode(which));
  if (g.format() != Format::table) return print_json(r);
  std::cout << "release   " << r.value("name", "") << " (" << r.value("id", "") << ")"
            << (r.value("current", false) ? " [current]" : "") << "\n";
  std::cout << "image     " << r["image"].value("ref", "") << "\n          " << r.value("image_digest", "") << "\n";
  std::cout << "manifest  " << r.value("manifest_hash", "") << "\n";
  std::cout << "versions  config v" << r.value("config_version", 0) << ", secrets v" << r.value("secrets_version", 0)
            << "\n";
  std::cout << "created   " << r.value("created_at", "") << " by " << r.value("created_by", "") << " ("
            << r.value("operation_id", "") << ")\n";
  const Json processes = r["manifest"].value("processes", Json::object());
  for (const auto& [name, p] : processes.items())
    std::cout << "process   " << name << ": count " << p.value("count", 0) << ", cpu " << p.value("cpu", 0.0)
              << ", memory " << p.value("memory", "") << "\n";
  for (const char* kind : {"config", "secrets"}) {
    std::string keys;
    const Json delivered = r["delivered"].value(kind, Json::object());
    for (const auto& [k, _] : delivered.items()) keys += (keys.empty() ? "" : ", ") + k;
    std::cout << (std::string(kind) == "config" ? "config    " : "secrets   ") << (keys.empty() ? "(none)" : keys)
              << "\n";
  }
  for (const auto& h : r.value("history", Json::array()))
    std::cout << "history   " << h.value("at", "") << " " << h.value("reason", "") << " by " << h.value("actor", "")
              << "\n";
}

void add_deploy_commands(CLI::App& app, Globals& g) {
  add_deploy(app, g);
  add_diff(app, g);
  add_rollback(app, g);
  add_releases(app, g);
}

}  // namespace platform::cli
