#include "engine/event_store.h"

#include <charconv>

#include "engine/error.h"

namespace platform::events {

std::string Cursor::encode() const { return std::to_string(tx) + "." + std::to_string(pos); }

std::optional<Cursor> Cursor::decode(std::string_view s) {
  auto dot = s.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  Cursor c;
  auto a = s.substr(0, dot), b = s.substr(dot + 1);
  auto r1 = std::from_chars(a.data(), a.data() + a.size(), c.tx);
  auto r2 = std::from_chars(b.data(), b.data() + b.size(), c.pos);
  if (r1.ec != std::errc{} || r1.ptr != a.data() + a.size() || r2.ec != std::errc{} ||
      r2.ptr != b.data() + b.size() || a.empty() || b.empty() || c.pos < 0)
    return std::nullopt;
  return c;
}

Json Recorded::to_json() const {
  return Json{{"cursor", cursor.encode()},  {"position", cursor.pos},        {"stream", stream},
              {"category", category},       {"stream_version", stream_version}, {"event_id", event_id},
              {"type", type},               {"schema_version", schema_version}, {"data", data},
              {"metadata", metadata},       {"recorded_at", recorded_at}};
}

bool Filter::empty() const {
  return org_id.empty() && type.empty() && resource_id.empty() && operation_id.empty() && since.empty();
}

bool Filter::matches(const Recorded& e) const {
  auto meta = [&](const char* k) -> std::string {
    auto it = e.metadata.find(k);
    return it != e.metadata.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (!org_id.empty() && meta("org_id") != org_id) return false;
  if (!type.empty()) {
    if (type.back() == '*') {
      if (e.type.compare(0, type.size() - 1, type, 0, type.size() - 1) != 0) return false;
    } else if (e.type != type) {
      return false;
    }
  }
  if (!resource_id.empty() && meta("resource_id") != resource_id && meta("parent_id") != resource_id) return false;
  if (!operation_id.empty() && meta("operation_id") != operation_id) return false;
  if (!since.empty() && e.recorded_at < since) return false;  // both RFC 3339 UTC with the same precision
  return true;
}

Json to_json(const std::vector<NewEvent>& events) {
  Json arr = Json::array();
  for (const auto& e : events)
    arr.push_back({{"event_id", e.event_id},
                   {"type", e.type},
                   {"schema_version", e.schema_version},
                   {"data", e.data},
                   {"metadata", e.metadata}});
  return arr;
}

namespace {
// The common append (one event, expected version given) as one prepared statement instead of a call
// into append_events: the same steps, without a PL/pgSQL frame and the JSON array round trip. See
// docs/decisions/0003-single-event-append.md.
//   1. the per-stream advisory lock, as append_events takes it;
//   2./3. nothing is written unless the expected version exists (or -1) and the event id is new; the
//      unique (stream_name, stream_version) index refuses a stream that has moved past it;
//   4. insert;
//   5. a NOTIFY once per transaction unless the session sends it after commit (pool connections).
// No row back means "not the simple case" (a duplicate id, or a stream behind the expected version):
// the caller asks append_events, which answers exactly (nothing was written).
constexpr const char* kAppendOne =
    "WITH stream_lock AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtextextended('stream:' || $1::text, 0)))"
    " INSERT INTO events (stream_name, category, stream_version, event_id, type, schema_version, data, metadata)"
    " SELECT $1::text, split_part($1::text, '-', 1), $2::bigint + 1, $3::uuid, $4::text, $5::integer,"
    "        $6::jsonb, $7::jsonb"
    " FROM stream_lock"
    " WHERE ($2::bigint = -1 OR EXISTS (SELECT 1 FROM events ev WHERE ev.stream_name = $1::text"
    "                                     AND ev.stream_version = $2::bigint))"
    "   AND NOT EXISTS (SELECT 1 FROM events ev WHERE ev.event_id = $3::uuid)"
    " RETURNING events.global_position, events.tx_id, events.stream_version, events.event_id,"
    "   CASE WHEN current_setting('platform.notify_after_commit', true) = 'on'"
    "          OR current_setting('platform.notified', true) = 'yes' THEN false"
    "        ELSE set_config('platform.notified', 'yes', true) IS NOT NULL"
    "         AND pg_notify('platform_events', events.category) IS NULL END";

Appended appended(const pqxx::row& r, bool duplicate, const NewEvent& e) {
  return {r[0].as<std::int64_t>(), r[1].as<std::uint64_t>(), r[2].as<std::int64_t>(), r[3].as<std::string>(),
          duplicate, e.type};
}
}  // namespace

std::vector<Appended> append(pqxx::transaction_base& tx, const std::string& stream,
                             std::optional<std::int64_t> expected, const std::vector<NewEvent>& events) {
  // Prepared once per connection (pqxx registers it on first use; defining it again is a no-op), so
  // the server does not parse and plan the call on every append.
  auto& conn = tx.conn();
  try {
    if (expected && *expected >= -1 && events.size() == 1 && !stream.empty()) {
      const auto& e = events.front();
      conn.prepare("platform_append_one", kAppendOne);
      auto rows = tx.exec_prepared("platform_append_one", stream, *expected, e.event_id, e.type, e.schema_version,
                                   e.data.dump(), e.metadata.dump());
      if (rows.size() == 1) return {appended(rows[0], false, e)};
    }
    conn.prepare("platform_append_expected", "SELECT * FROM append_events($1, $2, $3::jsonb)");
    conn.prepare("platform_append_any", "SELECT * FROM append_events($1, NULL, $2::jsonb)");
    auto rows = expected ? tx.exec_prepared("platform_append_expected", stream, *expected, to_json(events).dump())
                         : tx.exec_prepared("platform_append_any", stream, to_json(events).dump());
    // One row per event, in the order given (a duplicate answers with the original rows, which had the
    // same events).
    std::vector<Appended> out;
    for (std::size_t i = 0; i < rows.size(); ++i)
      out.push_back(appended(rows[i], rows[i][4].as<bool>(), i < events.size() ? events[i] : NewEvent{}));
    return out;
  } catch (const pqxx::unique_violation& e) {
    // A race the unique indexes settled: another transaction recorded the same stream version (the
    // single-event path does not re-read the stream under its lock) or the same event id first.
    const std::string what = e.what();
    if (what.find("\"events_stream_name_stream_version_key\"") != std::string::npos)
      throw PlatformError(ErrorCode::version_conflict,
                          expected ? "wrong expected version for stream " + stream + ": expected " +
                                         std::to_string(*expected) + ", but version " + std::to_string(*expected + 1) +
                                         " was appended by another writer first"
                                   : "another writer appended to stream " + stream + " at the same version first",
                          "Re-read the resource and retry with its current version.");
    if (what.find("\"events_event_id_key\"") != std::string::npos)
      throw PlatformError(ErrorCode::idempotency_conflict,
                          "an append with the same event id was recorded at the same moment",
                          "Retry with exactly the same events to get the original result.");
    throw;
  }
}

namespace {
constexpr const char* kColumns =
    "global_position, tx_id::text, stream_name, category, stream_version, event_id::text, type, "
    "schema_version, data::text, metadata::text, "
    "to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

Recorded from_row(const pqxx::row& r) {
  Recorded e;
  e.cursor.pos = r[0].as<std::int64_t>();
  e.cursor.tx = std::stoull(r[1].as<std::string>());
  e.stream = r[2].as<std::string>();
  e.category = r[3].as<std::string>();
  e.stream_version = r[4].as<std::int64_t>();
  e.event_id = r[5].as<std::string>();
  e.type = r[6].as<std::string>();
  e.schema_version = r[7].as<int>();
  e.data = Json::parse(r[8].as<std::string>());
  e.metadata = Json::parse(r[9].as<std::string>());
  e.recorded_at = r[10].as<std::string>();
  return e;
}
}  // namespace

Cursor head(pqxx::transaction_base& tx) {
  auto r = tx.exec(
      "SELECT tx_id::text, global_position FROM events "
      "WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY events.tx_id DESC, events.global_position DESC LIMIT 1");
  if (r.empty()) return {};
  return {std::stoull(r[0][0].as<std::string>()), r[0][1].as<std::int64_t>()};
}

namespace {
// One statement, so one snapshot and one round trip: the page below the horizon and whether committed
// events wait at or above it (`held`). Every event at or above the horizon sorts after every event below
// it, so `held` asks only whether the newest visible event (one step of the cursor index, backwards) is
// after `after` and at or above the horizon; when the page is short, that is the same question as
// "after the page". The horizon is an init plan, so the cursor index bounds the page whatever the plan
// (a prepared statement's generic plan too). The outer join keeps one row (all NULL but `held`) when
// the page is empty. `filters` is spliced in as SQL text (constant per statement, never a value).
std::string read_after_sql(const char* filters) {
  return std::string(
             "WITH horizon AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),"
             " newest AS MATERIALIZED (SELECT tx_id, global_position FROM events"
             "   ORDER BY tx_id DESC, global_position DESC LIMIT 1),"
             " page AS MATERIALIZED (SELECT ") +
         kColumns +
         ", events.tx_id AS order_tx, events.global_position AS order_pos"
         " FROM events WHERE (tx_id, global_position) > ($1::text::xid8, $2::bigint)"
         " AND tx_id < (SELECT xmin FROM horizon)" +
         filters +
         " ORDER BY events.tx_id, events.global_position LIMIT $3::integer)"
         " SELECT page.*, coalesce((SELECT n.tx_id >= h.xmin AND (n.tx_id, n.global_position) >"
         "   ($1::text::xid8, $2::bigint) FROM newest n, horizon h), false) AS held"
         " FROM (SELECT 1) AS one LEFT JOIN page ON true ORDER BY page.order_tx, page.order_pos";
}
}  // namespace

Page read_tail(pqxx::transaction_base& tx, const Filter& f, int n) {
  // One statement: the page and the head in one snapshot. Every filter is in SQL (the type too, unlike
  // read_after's), so the n rows read backwards are n that match.
  static const std::string sql = std::string(
      "WITH horizon AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),"
      " newest AS MATERIALIZED (SELECT tx_id, global_position FROM events WHERE tx_id < (SELECT xmin FROM horizon)"
      "   ORDER BY tx_id DESC, global_position DESC LIMIT 1),"
      " page AS MATERIALIZED (SELECT ") + kColumns +
      ", events.tx_id AS order_tx, events.global_position AS order_pos"
      " FROM events WHERE tx_id < (SELECT xmin FROM horizon)"
      " AND ($2 = '' OR metadata->>'org_id' = $2)"
      " AND ($3 = '' OR metadata->>'operation_id' = $3)"
      " AND ($4 = '' OR metadata->>'resource_id' = $4 OR metadata->>'parent_id' = $4)"
      " AND ($5 = '' OR recorded_at >= $5::timestamptz)"
      " AND ($6 = '' OR type = $6 OR (right($6, 1) = '*' AND starts_with(type, left($6, -1))))"
      " ORDER BY events.tx_id DESC, events.global_position DESC LIMIT $1::integer)"
      " SELECT page.*, newest.tx_id::text, newest.global_position"
      " FROM newest LEFT JOIN page ON true ORDER BY page.order_tx, page.order_pos";
  Page page;
  for (const auto& r : tx.exec_params(sql, n, f.org_id, f.operation_id, f.resource_id, f.since, f.type)) {
    page.next = {std::stoull(r[13].as<std::string>()), r[14].as<std::int64_t>()};
    if (r[0].is_null()) continue;  // the empty page's row
    auto e = from_row(r);
    if (f.matches(e)) page.events.push_back(std::move(e));
  }
  return page;
}

Page read_after(pqxx::transaction_base& tx, Cursor after, const Filter& f, int limit) {
  pqxx::result rows;
  if (f.empty()) {
    // The unfiltered read (the watch hub after every wake-up, projections) is prepared once per
    // connection: planning it cost more than running it (about 0.6 ms against 0.1 ms).
    static const std::string all = read_after_sql("");
    tx.conn().prepare("platform_read_after", all);
    rows = tx.exec_prepared("platform_read_after", std::to_string(after.tx), after.pos, limit);
  } else {
    // Filters are pushed into SQL (indexes on org and operation), planned for the values at hand;
    // Filter::matches stays the one definition used for the in-memory fan-out and is applied again
    // here so both paths agree exactly.
    static const std::string filtered = read_after_sql(
        " AND ($4 = '' OR metadata->>'org_id' = $4)"
        " AND ($5 = '' OR metadata->>'operation_id' = $5)"
        " AND ($6 = '' OR metadata->>'resource_id' = $6 OR metadata->>'parent_id' = $6)"
        " AND ($7 = '' OR recorded_at >= $7::timestamptz)");
    rows = tx.exec_params(filtered, std::to_string(after.tx), after.pos, limit, f.org_id, f.operation_id,
                          f.resource_id, f.since);
  }
  Page page;
  page.next = after;
  int read = 0;
  bool held = false;
  for (const auto& r : rows) {
    held = r[13].as<bool>();
    if (r[0].is_null()) continue;  // the empty page's row
    ++read;
    auto e = from_row(r);
    page.next = e.cursor;
    if (f.matches(e)) page.events.push_back(std::move(e));
  }
  if (read < limit) {
    if (!f.empty()) page.next = std::max(page.next, head(tx));
    page.held_back = held;
  }
  return page;
}

}  // namespace platform::events
