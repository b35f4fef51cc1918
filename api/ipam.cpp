#include "api/ipam.h"

#include <fmt/format.h>

#include "engine/crypto.h"
#include "engine/db.h"
#include "engine/error.h"
#include "engine/error_details.h"
#include "engine/ids.h"

namespace platform::api {

namespace {

const std::string kColumns =
    "a.id, a.family, host(a.address), a.price_cents_month, a.env_id, ap.name, e.name, " + db::sql_rfc3339("a.allocated_at") +
    ", a.allocated_by, coalesce(" + db::sql_rfc3339("a.released_at") + ", ''), "
    "(SELECT count(*) FROM core.ip_usage u WHERE u.allocation_id = a.id)::int, a.operation_id, pr.name";
constexpr const char* kFrom =
    " FROM core.ip_allocations a JOIN core.resources e ON e.id = a.env_id JOIN core.resources ap ON ap.id = e.parent_id"
    " JOIN core.resources pr ON pr.id = ap.parent_id";

Json row_json(const pqxx::row& r) {
  const int cents = r[3].as<int>();
  Json j = {{"id", r[0].as<std::string>()},
            {"family", r[1].as<int>() == 4 ? "ipv4" : "ipv6"},
            {"address", r[2].as<std::string>()},
            {"env_id", r[4].as<std::string>()},
            {"project", r[12].as<std::string>()},
            {"app", r[5].as<std::string>()},
            {"env", r[6].as<std::string>()},
            {"price_cents_month", cents},
            {"price", cents > 0 ? format_price(cents) : "included"},
            {"allocated_at", r[7].as<std::string>()},
            {"allocated_by", r[8].as<std::string>()},
            {"operation_id", r[11].as<std::string>()},
            {"state", r[9].as<std::string>().empty() ? "allocated" : "released"}};
  if (!r[9].as<std::string>().empty()) j["released_at"] = r[9].as<std::string>();
  if (cents > 0) j["usage_hours"] = r[10].as<int>();
  return j;
}

}  // namespace

std::optional<Json> env_address(pqxx::transaction_base& tx, const std::string& env_id, int family) {
  auto r = tx.exec_params("SELECT " + kColumns + kFrom +
                              " WHERE a.env_id = $1 AND a.family = $2 AND a.released_at IS NULL",
                          env_id, family);
  if (r.empty()) return std::nullopt;
  return row_json(r[0]);
}

namespace {

void check_cidr(pqxx::work& tx, const std::string& cidr, const char* flag, int family) {
  try {
    pqxx::subtransaction sub(tx, "cidr_check");
    auto r = sub.exec_params("SELECT family($1::cidr)", cidr);
    sub.commit();
    if (r[0][0].as<int>() != family)
      throw PlatformError(ErrorCode::invalid_request,
                          fmt::format("{} {} is not an IPv{} prefix", flag, cidr, family), "");
  } catch (const pqxx::sql_error&) {
    throw PlatformError(ErrorCode::invalid_request, fmt::format("{} \"{}\" is not a CIDR prefix", flag, cidr),
                        family == 4 ? "e.g. 203.0.113.0/28" : "e.g. 2001:db8:100::/112");
  }
}

}  // namespace

std::string ips_stream(const std::string& env_id) { return "ips-" + env_id; }

std::string format_price(int cents_month) { return fmt::format("${}.{:02}/month", cents_month / 100, cents_month % 100); }

void configure_pools(pqxx::work& tx, const Pools& pools) {
  auto put = [&](const char* kind, const std::string& cidr, int price, const char* flag, int family) {
    if (cidr.empty()) return;
    check_cidr(tx, cidr, flag, family);
    tx.exec_params(
        "INSERT INTO core.ip_pools (kind, cidr, price_cents_month) VALUES ($1, $2::cidr, $3)"
        " ON CONFLICT (kind) DO UPDATE SET cidr = excluded.cidr, price_cents_month = excluded.price_cents_month,"
        " updated_at = now() WHERE core.ip_pools.cidr <> excluded.cidr"
        " OR core.ip_pools.price_cents_month <> excluded.price_cents_month",
        kind, cidr, price);
  };
  put("ipv6", pools.ipv6, 0, "--ipv6-pool", 6);
  put("ipv4", pools.ipv4, pools.ipv4_price_cents_month, "--ipv4-pool", 4);
  put("instance", pools.instance, 0, "--instance-pool", 4);
}

int ipv4_price_cents(pqxx::transaction_base& tx) {
  auto r = tx.exec("SELECT price_cents_month FROM core.ip_pools WHERE kind = 'ipv4'");
  if (r.empty())
    throw PlatformError(ErrorCode::precondition_failed, "this platform has no IPv4 pool, so the IPv4 add-on is not offered",
                        "Endpoints answer over IPv6. An operator adds IPv4 with platformd serve --ipv4-pool CIDR.");
  return r[0][0].as<int>();
}

Allocated allocate_address(pqxx::work& tx, const Actor& actor, const Resolved& env, int family,
                           const PriceAcceptance& accepted) {
  Allocated out;
  if (auto live = env_address(tx, env.id, family)) {
    out.address = *live;
    return out;
  }
  const int cents = family == 4 ? ipv4_price_cents(tx) : 0;
  if (family == 4 && accepted.cents != cents) {
    // The detail says what to accept: the CLI (post_accepting_ipv4) asks for it and sends the request again.
    const auto why = accepted.asked_by.empty() ? std::string("the request asks for the IPv4 add-on") : accepted.asked_by;
    throw DetailedError({ErrorCode::precondition_failed,
                         fmt::format("{}a dedicated IPv4 address for env {} costs {}, and the request did not "
                                     "accept that price",
                                     accepted.asked_by.empty() ? "" : accepted.asked_by + ": ", env.name,
                                     format_price(cents)),
                         accepted.hint},
                        Json::array({{{"text", why},
                                      {"accept", "ipv4_price"},
                                      {"price_cents_month", cents},
                                      {"price", format_price(cents)}}}));
  }
  // core.free_address locks the pool's row: concurrent allocations take turns (docs/network.md).
  auto address = tx.exec_params("SELECT host(core.free_address($1))", family == 4 ? "ipv4" : "ipv6")[0][0].as<std::string>();
  const auto id = new_id("ip");
  tx.exec_params(
      "INSERT INTO core.ip_allocations (id, org_id, env_id, family, address, price_cents_month, allocated_by, operation_id)"
      " VALUES ($1, $2, $3, $4, $5::inet, $6, $7, $8)",
      id, env.org_id, env.id, family, address, cents, actor.user_id, actor.operation_id);
  out.address = *env_address(tx, env.id, family);
  Json data = {{"allocation_id", id}, {"env_id", env.id}, {"family", out.address["family"]},
               {"address", address},  {"price_cents_month", cents}};
  out.appended = events::append(tx, ips_stream(env.id), std::nullopt,
                                {{uuid_to_string(new_uuid_v7()), "IpAllocated", 1, data,
                                  event_metadata(actor, env)}});
  return out;
}

Json ensure_env_addresses(pqxx::work& tx, const Actor& actor, const Resolved& env, const Json& manifest,
                          std::optional<std::int64_t> accept_price_cents_month) {
  if (!tx.exec("SELECT 1 FROM core.ip_pools WHERE kind = 'ipv6'").empty()) allocate_address(tx, actor, env, 6);
  std::string wants;
  for (const auto& e : manifest.value("endpoints", Json::array()))
    if (e.value("ipv4", false)) wants = e.value("name", "");
  if (!wants.empty())
    allocate_address(tx, actor, env, 4,
                     {accept_price_cents_month, "endpoint " + wants + " asks for the IPv4 add-on (ipv4 = true)",
                      "Confirm it with --yes (platform deploy, deploy --apply, rollback) or by answering the question, or "
                      "allocate it first with platform ip allocate-v4. Without ipv4 = true the endpoint answers over "
                      "IPv6 only."});
  return list_addresses(tx, env.org_id, env.id, false);
}

Allocated release_address(pqxx::work& tx, const Actor& actor, const Resolved& env, int family) {
  auto live = env_address(tx, env.id, family);
  if (!live)
    throw PlatformError(ErrorCode::not_found, fmt::format("env {} holds no IPv{} address", env.name, family),
                        "List what it holds: platform ip list");
  // Its last hours are recorded before it is released.
  tx.exec_params("UPDATE core.ip_allocations SET released_at = now(), released_by = $2 WHERE id = $1",
                 (*live)["id"].get<std::string>(), actor.user_id);
  tx.exec("SELECT core.meter_ip_usage()");
  Allocated out;
  out.address = *live;
  out.address["state"] = "released";
  Json data = {{"allocation_id", (*live)["id"]}, {"env_id", env.id}, {"family", (*live)["family"]},
               {"address", (*live)["address"]}};
  out.appended = events::append(tx, ips_stream(env.id), std::nullopt,
                                {{uuid_to_string(new_uuid_v7()), "IpReleased", 1, data,
                                  event_metadata(actor, env)}});
  return out;
}

void release_env_addresses(pqxx::work& tx, const Actor& actor, const Resolved& env) {
  for (int family : {4, 6})
    if (env_address(tx, env.id, family)) release_address(tx, actor, env, family);
}

Json list_addresses(pqxx::transaction_base& tx, const std::string& org_id, const std::string& env_id, bool all) {
  auto rows = tx.exec_params("SELECT " + kColumns + kFrom +
                                 " WHERE a.org_id = $1 AND ($2 = '' OR a.env_id = $2) AND ($3 OR a.released_at IS NULL)"
                                 " ORDER BY a.allocated_at DESC, a.id",
                             org_id, env_id, all);
  Json out = Json::array();
  for (const auto& r : rows) out.push_back(row_json(r));
  return out;
}

int meter_usage(pqxx::work& tx) { return tx.exec("SELECT core.meter_ip_usage()")[0][0].as<int>(); }

}  // namespace platform::api
