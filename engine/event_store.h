#pragma once
// The event log: append through the append_events procedure, read by (tx_id, global_position) cursor
// below the safe horizon. See DESIGN.md section 3 and docs/event-log.md.
#include <pqxx/pqxx>

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/json.h"

namespace platform::events {

// A reader's position: events are ordered by (tx_id, global_position), never by position alone.
struct Cursor {
  std::uint64_t tx = 0;
  std::int64_t pos = 0;
  auto operator<=>(const Cursor&) const = default;
  std::string encode() const;  // "<tx>.<pos>", opaque to clients
  static std::optional<Cursor> decode(std::string_view s);
};

struct NewEvent {
  std::string event_id;  // UUID; the idempotency key of this event
  std::string type;      // e.g. "AppCreated"
  int schema_version = 1;
  Json data = Json::object();
  Json metadata = Json::object();  // actor, request_id, operation_id, org_id, resource_kind, resource_id ...
};

struct Appended {
  std::int64_t position = 0;
  std::uint64_t tx = 0;
  std::int64_t stream_version = 0;
  std::string event_id;
  bool duplicate = false;
  std::string type;  // the event's type, as it was appended (receipts name it)
};

struct Recorded {
  Cursor cursor;
  std::string stream;
  std::string category;
  std::int64_t stream_version = 0;
  std::string event_id;
  std::string type;
  int schema_version = 1;
  Json data;
  Json metadata;
  std::string recorded_at;  // RFC 3339, UTC
  Json to_json() const;
};

// Every filter is optional; an empty field matches everything.
struct Filter {
  std::string org_id;
  std::string type;          // exact type, or a prefix ending in '*' ("App*")
  std::string resource_id;   // events of this resource and of its descendants' operations on it
  std::string operation_id;
  std::string since;         // RFC 3339 timestamp; events recorded at or after it
  bool matches(const Recorded& e) const;
  bool empty() const;
};

struct Page {
  std::vector<Recorded> events;
  Cursor next;             // pass back as `after` to continue
  bool held_back = false;  // committed events exist above the horizon: poll again soon
};

// expected: nullopt = any, -1 = stream must not exist, n = stream must be at version n.
std::vector<Appended> append(pqxx::transaction_base& tx, const std::string& stream,
                             std::optional<std::int64_t> expected, const std::vector<NewEvent>& events);

// Events after `after`, below the horizon, in cursor order. With a filter, call it in a repeatable-read
// transaction: `next` then also skips past the events that did not match.
Page read_after(pqxx::transaction_base& tx, Cursor after, const Filter& filter, int limit);

// The newest `n` events that match, below the horizon, oldest first; `next` is the newest cursor below
// the horizon (matching or not), read in the same snapshot, so a reader that goes on from it with
// read_after misses nothing and repeats nothing.
Page read_tail(pqxx::transaction_base& tx, const Filter& filter, int n);

// The newest cursor below the horizon (where a new watcher starts).
Cursor head(pqxx::transaction_base& tx);

Json to_json(const std::vector<NewEvent>& events);

}  // namespace platform::events
