#pragma once
// IPAM (docs/network.md#addresses): the pools `platformd serve` was given, each app env's dedicated IPv6
// address (by default, at its first deploy), the paid IPv4 add-on (only when asked; allocated atomically
// from the scarce pool, with its monthly price and an hourly usage record), and their release. Every
// change appends IpAllocated or IpReleased to ips-<env id> in the same transaction as the row.
#include <pqxx/pqxx>

#include <optional>
#include <string>

#include "api/resources.h"
#include "engine/json.h"

namespace platform::api {

struct Pools {
  std::string ipv6, ipv4, instance;  // CIDRs; empty: leave that pool as it is
  int ipv4_price_cents_month = 0;
};
// Upserts the given pools (platformd serve, at every start). Throws invalid_request for a malformed CIDR.
void configure_pools(pqxx::work& tx, const Pools& pools);

std::string ips_stream(const std::string& env_id);

// The env's live address of `family` (4 or 6), as JSON; nullopt when it has none.
std::optional<Json> env_address(pqxx::transaction_base& tx, const std::string& env_id, int family);

// The IPv4 add-on's monthly price in cents; throws precondition_failed when no IPv4 pool is configured.
int ipv4_price_cents(pqxx::transaction_base& tx);
std::string format_price(int cents_month);  // "$2.00/month"

struct Allocated {
  Json address;  // {id, family, address, price_cents_month, price, allocated_at, ...}
  std::vector<events::Appended> appended;
};
// The price the caller accepted for a new IPv4 address, and what to say when it is not the price.
struct PriceAcceptance {
  std::optional<std::int64_t> cents;  // must equal the IPv4 add-on's monthly price
  std::string asked_by;               // who wants it, to begin the error message ("" : nothing)
  std::string hint;
};
// The env's address of `family`, allocated now from its pool when it has none. A new IPv4 address needs
// its price accepted (else precondition_failed, naming the price). Throws capacity when the pool is full
// and precondition_failed when it is not configured.
Allocated allocate_address(pqxx::work& tx, const Actor& actor, const Resolved& env, int family,
                           const PriceAcceptance& accepted = {});

// What a deploy or rollback to `manifest` (normalised release JSON) needs: the env's IPv6 address when an
// IPv6 pool is configured, and the IPv4 add-on when an endpoint asks for it (ipv4 = true) and the env
// holds none, which needs `accept_price_cents_month` to equal its price (else precondition_failed, with
// the price). Returns the env's live addresses.
Json ensure_env_addresses(pqxx::work& tx, const Actor& actor, const Resolved& env, const Json& manifest,
                          std::optional<std::int64_t> accept_price_cents_month);

// Releases the env's address of `family` (throws not_found when it holds none).
Allocated release_address(pqxx::work& tx, const Actor& actor, const Resolved& env, int family);
// Releases whatever the env holds (the env is being deleted).
void release_env_addresses(pqxx::work& tx, const Actor& actor, const Resolved& env);

// The org's addresses (live ones; released ones too when `all`), newest first, optionally of one env,
// each with its app and env names and, for priced ones, the hours recorded so far.
Json list_addresses(pqxx::transaction_base& tx, const std::string& org_id, const std::string& env_id, bool all);

// Records every started hour of every priced allocation not yet recorded; returns how many it added.
int meter_usage(pqxx::work& tx);

}  // namespace platform::api
