// platform org|project|app|env create|list|describe|delete
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <iostream>

#include "cli/cli.h"
#include "engine/error.h"
#include "engine/error_details.h"
#include "engine/ids.h"

namespace platform::cli {
namespace {

struct KindSpec {
  const char* kind;
  const char* collection;
  const char* prefix;
  const char* parent;  // flag naming the parent, "" for org
  const char* events_example;
};
constexpr KindSpec kKinds[] = {
    {"org", "orgs", "org", "", "platform org events acme --since 1h"},
    {"project", "projects", "prj", "org", "platform project events shop --since 1h"},
    {"app", "apps", "app", "project", "platform app events api --project shop --since 1h"},
    {"env", "envs", "env", "app", "platform env events prod -f --project shop --app api"}};

// "/v1/orgs/<org>/projects/<project>/..." down to (not including) `kind`'s collection.
std::string parent_path(const Session& s, const std::string& kind) {
  std::string path = "/v1";
  if (kind == "org") return path;
  path += "/orgs/" + api::url_encode(s.need_org());
  if (kind == "project") return path;
  path += "/projects/" + api::url_encode(s.need_project());
  if (kind == "app") return path;
  return path + "/apps/" + api::url_encode(s.need_app());
}

std::string item_path(const Session& s, const KindSpec& k, const std::string& ref) {
  std::string prefix;
  if (looks_like_id(ref, &prefix) && prefix == k.prefix) return "/v1/resources/" + ref;
  return parent_path(s, k.kind) + "/" + k.collection + "/" + api::url_encode(ref);
}

std::vector<std::string> row_of(const Json& r) {
  const auto by = r.value("created_by_name", "");
  return {r.value("name", ""), r.value("id", ""), r.value("state", ""), r.value("created_at", "").substr(0, 19),
          by.empty() ? r.value("created_by", "") : by};
}

// An env's row: what it runs ("v4", "2 (2 serving)") and its addresses beside the common columns.
std::vector<std::string> env_row_of(const Json& r) {
  auto row = row_of(r);
  const auto rt = r.contains("runtime") && r["runtime"].is_object() ? r["runtime"] : Json::object();
  const auto release = rt.contains("release") && rt["release"].is_object() ? rt["release"].value("name", "-") : "-";
  const auto n = rt.value("instances", std::int64_t{0}), serving = rt.value("serving", std::int64_t{0});
  std::string addresses;
  for (const auto& a : rt.value("addresses", Json::array()))
    if (a.is_string()) addresses += (addresses.empty() ? "" : ", ") + a.get<std::string>();
  row.insert(row.begin() + 3, {release, n == 0 ? "0" : std::to_string(n) + " (" + std::to_string(serving) + " serving)",
                               addresses.empty() ? "-" : addresses});
  return row;
}

// Under an empty list: where it looked, and the command that makes the first one.
std::string empty_note(const Session& s, const KindSpec& k, bool deleted) {
  std::string where, flags;
  if (std::string(k.parent) == "project") where = " in project " + s.need_project(), flags = " --project " + s.need_project();
  if (std::string(k.parent) == "app")
    where = " in app " + s.need_app() + " of project " + s.need_project(),
    flags = " --project " + s.need_project() + " --app " + s.need_app();
  if (std::string(k.parent) == "org") where = " in org " + s.need_org();
  return std::string("No ") + k.collection + where + (deleted ? ", deleted or not" : " yet") + "; create one with `platform " +
         k.kind + " create NAME" + flags + "`.";
}

void print_resource(const Globals& g, const Json& r) {
  if (g.format() != Format::table) {
    if (g.format() == Format::ndjson) std::cout << r.dump() << "\n";
    else print_json(r);
    return;
  }
  auto field = [](const char* k, const std::string& v) { std::cout << k << std::string(14 - std::string(k).size(), ' ') << v << "\n"; };
  field("Name:", r.value("name", ""));
  field("ID:", r.value("id", ""));
  field("Kind:", r.value("kind", ""));
  if (r.contains("path")) field("Path:", r.value("path", ""));
  field("State:", r.value("state", ""));
  field("Org:", r.value("org_id", ""));
  if (!r.value("parent_id", "").empty()) field("Parent:", r.value("parent_id", ""));
  if (!r.value("description", "").empty()) field("Description:", r.value("description", ""));
  if (r.contains("labels") && !r["labels"].empty()) field("Labels:", r["labels"].dump());
  const auto by = r.value("created_by_name", "");
  field("Created:", r.value("created_at", "") + " by " + (by.empty() ? r.value("created_by", "") : by + " (" + r.value("created_by", "") + ")"));
  if (r.contains("deleted_at")) field("Deleted:", r.value("deleted_at", "") + " by " + r.value("deleted_by", ""));
  field("Version:", std::to_string(r.value("version", 0)));
  field("Last op:", r.value("last_operation", ""));
  if (r.contains("runtime") && r["runtime"].is_object()) {  // an env: what it runs
    const auto row = env_row_of(r);
    field("Release:", row[3]);
    field("Instances:", row[4]);
    field("Addresses:", row[5]);
  }
  std::cout << "\nHistory: platform events --resource " << r.value("id", "") << "\n";
  if (r.value("kind", "") == "env" && r.contains("path") && !r.contains("deleted_at")) {
    auto names = path_names(r.value("path", ""));  // what runs there, and what it exposes
    const auto at = " --project " + names["project"] + " --app " + names["app"] + " --env " + names["env"];
    std::cout << "Status:  platform status" << at << "\n"
              << "Exposed: platform endpoint list" << at << "\n";
  }
  std::cout << std::flush;
}

void add_kind(CLI::App& app, Globals& g, const KindSpec& k) {
  const std::string a_kind = (std::string("aeiou").find(k.kind[0]) != std::string::npos ? "an " : "a ") + std::string(k.kind);
  auto* cmd = app.add_subcommand(k.kind, std::string("Manage ") + k.collection);
  cmd->require_subcommand(1);

  auto name = std::make_shared<std::string>();
  auto description = std::make_shared<std::string>();
  auto labels = std::make_shared<std::vector<std::string>>();
  auto key = std::make_shared<std::string>();
  auto* create = cmd->add_subcommand("create", "Create " + a_kind + " (prints a receipt)");
  create->add_option("name", *name, "Name: a-z, 0-9 and '-', starting with a letter")->required();
  create->add_option("--description", *description, "Free text");
  create->add_option("--label", *labels, "KEY=VALUE (repeatable)");
  create->add_option("--idempotency-key", *key, "Retry-safe key: the same key returns the first receipt");
  create->callback([&g, &k, name, description, labels, key] {
    auto s = open_session(g);
    Json body = {{"name", *name}};
    if (!description->empty()) body["description"] = *description;
    if (!labels->empty()) {
      Json l = Json::object();
      for (const auto& kv : *labels) {
        auto eq = kv.find('=');
        if (eq == std::string::npos || eq == 0)
          throw PlatformError(ErrorCode::invalid_request, "--label \"" + kv + "\" is not KEY=VALUE", "");
        l[kv.substr(0, eq)] = kv.substr(eq + 1);
      }
      body["labels"] = l;
    }
    auto r = s.client().call("POST", parent_path(s, k.kind) + "/" + k.collection, body,
                             key->empty() ? new_id("idem") : *key);
    print_receipt(g, r);
  });

  auto deleted = std::make_shared<bool>(false);
  auto* list = cmd->add_subcommand("list", std::string("List ") + k.collection);
  list->add_flag("--deleted", *deleted, "Include deleted ones");
  list->callback([&g, &k, deleted] {
    auto s = open_session(g);
    auto r = s.client().call("GET", parent_path(s, k.kind) + "/" + k.collection + (*deleted ? "?deleted=true" : ""));
    if (g.format() == Format::json) return print_json(r);
    if (g.format() == Format::ndjson) {
      for (const auto& item : r["items"]) std::cout << item.dump() << "\n";
      return;
    }
    std::vector<std::vector<std::string>> rows;
    const bool envs = std::string_view(k.kind) == "env";
    for (const auto& item : r["items"]) rows.push_back(envs ? env_row_of(item) : row_of(item));
    if (envs)
      print_table({"NAME", "ID", "STATE", "RELEASE", "INSTANCES", "ADDRESSES", "CREATED", "BY"}, rows);
    else
      print_table({"NAME", "ID", "STATE", "CREATED", "BY"}, rows);
    if (rows.empty()) note(g, empty_note(s, k, *deleted));
  });

  auto ref = std::make_shared<std::string>();
  auto* describe = cmd->add_subcommand("describe", "Show " + a_kind + " by name or ID");
  describe->add_option("name", *ref, "Name or ID")->required();
  describe->callback([&g, &k, ref] {
    auto s = open_session(g);
    print_resource(g, s.client().call("GET", item_path(s, k, *ref)));
  });

  add_events_verb(cmd, g, k.kind, k.events_example);

  auto dref = std::make_shared<std::string>();
  auto dkey = std::make_shared<std::string>();
  auto* del = cmd->add_subcommand("delete", "Delete " + a_kind + " (recorded as an event; history stays)");
  del->add_option("name", *dref, "Name or ID")->required();
  del->add_option("--idempotency-key", *dkey, "Retry-safe key");
  auto ifv = std::make_shared<std::string>();
  del->add_option("--if-version", *ifv, "Only if the resource is still at this version (else exit 6)");
  auto yes = std::make_shared<bool>(false);
  if (std::string_view(k.kind) == "env")
    del->add_flag("--yes", *yes, "Delete it though it runs instances or holds addresses (needed when not on a terminal)");
  del->callback([&g, &k, dref, dkey, ifv, yes] {
    auto s = open_session(g);
    std::string path = item_path(s, k, *dref);
    std::map<std::string, std::string> headers = {{"Idempotency-Key", dkey->empty() ? new_id("idem") : *dkey}};
    if (!ifv->empty()) headers["If-Match"] = *ifv;
    try {
      print_receipt(g, s.client().call("DELETE", path, std::nullopt, headers));
    } catch (const DetailedError& e) {
      // A live env: the server says what would go and the name that confirms it.
      const auto& d = e.details();
      const auto confirm = !d.empty() && d[0].is_object() ? d[0].value("confirm", "") : "";
      if (e.error().code != ErrorCode::precondition_failed || confirm.empty() || (!*yes && !::isatty(0))) throw;
      if (!*yes && !ask_typed(d[0].value("text", "") + ".", confirm))
        throw PlatformError(ErrorCode::interrupted, "not deleted", "");
      print_receipt(g, s.client().call("DELETE", path + "?confirm=" + api::url_encode(confirm), std::nullopt, headers));
    }
  });
}

}  // namespace

void describe_resource(const Globals& g, const Session& s, const std::string& kind, const std::string& ref) {
  for (const auto& k : kKinds)
    if (kind == k.kind) return print_resource(g, s.client().call("GET", item_path(s, k, ref)));
  throw PlatformError(ErrorCode::internal, "no resource kind \"" + kind + "\"", "");
}

void add_resource_commands(CLI::App& app, Globals& g) {
  for (const auto& k : kKinds) add_kind(app, g, k);
}

}  // namespace platform::cli
