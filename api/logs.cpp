#include "api/logs.h"

#include <fmt/format.h>

#include <algorithm>

#include "api/instances.h"
#include "api/routes.h"
#include "engine/db.h"
#include "engine/duration.h"
#include "engine/error.h"
#include "engine/event_store.h"

namespace platform::api {
namespace {

// "<app tx>.<app id>_<system tx>.<system position>": where each of the two sources was read up to.
struct LogCursor {
  events::Cursor app, system;
  std::string encode() const { return app.encode() + "_" + system.encode(); }
  static LogCursor decode(const std::string& s) {
    if (s.empty()) return {};
    const auto sep = s.find('_');
    std::optional<events::Cursor> a, b;
    if (sep != std::string::npos) {
      a = events::Cursor::decode(s.substr(0, sep));
      b = events::Cursor::decode(s.substr(sep + 1));
    }
    if (!a || !b)
      throw PlatformError(ErrorCode::invalid_request, "after=\"" + s.substr(0, 60) + "\" is not a logs cursor",
                          "Pass back the \"next\" of the previous answer.");
    return {*a, *b};
  }
};

}  // namespace

Json store_log_lines(pqxx::work& tx, const std::string& host_id, const Json& lines) {
  if (!lines.is_array() || lines.size() > 2000)
    throw PlatformError(ErrorCode::invalid_request, "lines must be an array of at most 2000",
                        "platform-agent ships logs in batches.");
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto& l = lines[i];
    auto bad = [&](const std::string& what) {
      throw PlatformError(ErrorCode::invalid_request, fmt::format("lines[{}]: {}", i, what),
                          "Each line is {instance_id, run, stream, offset, at, message}.");
    };
    if (!l.is_object()) bad("is not an object");
    for (const char* k : {"instance_id", "run", "stream", "at", "message"})
      if (!l.contains(k) || !l[k].is_string()) bad(std::string(k) + " must be a string");
    if (l["stream"] != "stdout" && l["stream"] != "stderr") bad("stream must be stdout or stderr");
    if (!l.contains("offset") || !l["offset"].is_number_integer() || l["offset"].get<std::int64_t>() < 0)
      bad("offset must be a non-negative integer");
    if (l["message"].get_ref<const std::string&>().size() > 64 * 1024) bad("message is longer than 64 KiB");
    if (!is_utc_time(l["at"].get<std::string>())) bad("at must be a UTC time such as 2026-11-22T06:31:55.830339Z");
  }
  auto r = tx.exec_params(
      "INSERT INTO core.log_lines (org_id, env_id, instance_id, instance_name, process, run, stream, byte_offset, at,"
      " message)"
      " SELECT i.org_id, i.env_id, i.id, i.name, i.process, l.run, l.stream, l.\"offset\", l.at::timestamptz, l.message"
      " FROM jsonb_to_recordset($1::jsonb) AS l(instance_id text, run text, stream text, \"offset\" bigint, at text,"
      " message text)"
      " JOIN core.instances i ON i.id = l.instance_id AND i.host_id = $2"
      " WHERE left(l.run, length(l.instance_id) + 2) = l.instance_id || '-r'"
      " ON CONFLICT (run, stream, byte_offset) DO NOTHING",
      lines.dump(), host_id);
  const auto stored = static_cast<std::int64_t>(r.affected_rows());
  return {{"stored", stored}, {"ignored", static_cast<std::int64_t>(lines.size()) - stored}};
}

Json read_logs(pqxx::transaction_base& tx, const LogQuery& q) {
  if (q.tail > 0 && !q.cursor.empty())
    throw PlatformError(ErrorCode::invalid_request, "tail and after cannot be combined",
                        "Ask for the tail once, then follow from its \"next\" with after.");
  auto cursor = LogCursor::decode(q.cursor);
  const auto since = q.since.empty() ? std::optional<std::string>() : std::optional<std::string>(q.since);
  const auto until = q.until.empty() ? std::optional<std::string>() : std::optional<std::string>(q.until);
  const auto process = q.process.empty() ? std::optional<std::string>() : std::optional<std::string>(q.process);
  const auto instance = q.instance.empty() ? std::optional<std::string>() : std::optional<std::string>(q.instance);
  // Forward from the cursor, or (a tail) backwards from the newest line: the last `tail` of each source,
  // merged by time below. Either way the cursor ends at the newest line read, so a follower goes on
  // from there.
  const bool tail = q.tail > 0;
  const int limit = tail ? q.tail : q.limit;
  const std::string order = tail ? " DESC" : "";
  auto advance = [&](events::Cursor& c, events::Cursor seen) {
    if (!tail || c == events::Cursor{}) c = seen;  // backwards, the first row read is the newest
  };
  Json lines = Json::array();
  const std::string horizon = "pg_snapshot_xmin(pg_current_snapshot())";
  if (q.source != "system") {
    for (const auto& r : tx.exec_params(
             "SELECT tx_id::text, id, " + db::sql_rfc3339("at") + ", process, instance_name, instance_id, stream, message"
             " FROM core.log_lines WHERE env_id = $1 AND (tx_id, id) > ($2::text::xid8, $3) AND tx_id < " + horizon +
             " AND ($4::text IS NULL OR process = $4) AND ($5::text IS NULL OR instance_name = $5 OR instance_id = $5)"
             " AND ($6::text IS NULL OR at >= $6::timestamptz) AND ($7::text IS NULL OR at < $7::timestamptz)"
             // Qualified: a bare tx_id would name the output column, the text, and order 1000 before 959.
             " ORDER BY log_lines.tx_id" + order + ", log_lines.id" + order + " LIMIT $8",
             q.env_id, std::to_string(cursor.app.tx), cursor.app.pos, process, instance, since, until, limit)) {
      advance(cursor.app, {r[0].as<std::uint64_t>(), r[1].as<std::int64_t>()});
      lines.push_back({{"at", r[2].as<std::string>()}, {"source", "app"}, {"process", r[3].as<std::string>()},
                       {"instance", r[4].as<std::string>()}, {"instance_id", r[5].as<std::string>()},
                       {"stream", r[6].as<std::string>()}, {"message", r[7].as<std::string>()}});
    }
  }
  const auto app_lines = static_cast<std::ptrdiff_t>(lines.size());
  if (q.source != "app") {
    for (const auto& r : tx.exec_params(
             // When it happened: what the agent reported for the changes it saw (on the clock that also
             // stamps the app's lines, so "started" comes before the app's first line), else when the
             // control plane recorded it (the scheduler's placements and stop requests).
             "WITH s AS (SELECT e.tx_id, e.global_position, i.process, i.name, i.id, e.type,"
             " coalesce(e.data->>'reason', '') AS reason,"
             " coalesce((e.data->>'reported_at')::timestamptz, e.recorded_at) AS at"
             " FROM core.instances i JOIN events e ON e.stream_name = 'instance-' || i.id"
             " WHERE i.env_id = $1 AND (e.tx_id, e.global_position) > ($2::text::xid8, $3) AND e.tx_id < " +
                 horizon +
                 " AND ($4::text IS NULL OR i.process = $4) AND ($5::text IS NULL OR i.name = $5 OR i.id = $5))"
                 " SELECT tx_id::text, global_position, " + db::sql_rfc3339("at") +
                 ", process, name, id, type, reason FROM s"
                 " WHERE ($6::text IS NULL OR at >= $6::timestamptz) AND ($7::text IS NULL OR at < $7::timestamptz)"
                 " ORDER BY s.tx_id" + order + ", s.global_position" + order + " LIMIT $8",
             q.env_id, std::to_string(cursor.system.tx), cursor.system.pos, process, instance, since, until, limit)) {
      advance(cursor.system, {r[0].as<std::uint64_t>(), r[1].as<std::int64_t>()});
      const auto reason = r[7].as<std::string>();
      lines.push_back({{"at", r[2].as<std::string>()}, {"source", "system"}, {"process", r[3].as<std::string>()},
                       {"instance", r[4].as<std::string>()}, {"instance_id", r[5].as<std::string>()},
                       {"stream", "platform"},
                       {"message", r[6].as<std::string>() + (reason.empty() ? "" : ": " + reason)}});
    }
  }
  if (tail) {  // each source oldest first again, before the merge
    std::reverse(lines.begin(), lines.begin() + app_lines);
    std::reverse(lines.begin() + app_lines, lines.end());
  }
  std::stable_sort(lines.begin(), lines.end(),
                   [](const Json& a, const Json& b) { return a["at"].get<std::string>() < b["at"].get<std::string>(); });
  if (tail && lines.size() > static_cast<std::size_t>(limit))
    lines.erase(lines.begin(), lines.begin() + static_cast<std::ptrdiff_t>(lines.size() - limit));
  return {{"lines", lines}, {"next", cursor.encode()}};
}

Json last_output(pqxx::transaction_base& tx, const std::string& instance_id, int limit) {
  // The newest line names the latest run; its lines are the newest ones of the instance, so both
  // lookups walk log_lines_by_instance backwards from the end.
  auto rows = tx.exec_params(
      "SELECT " + db::sql_rfc3339("at") + ", stream, message FROM core.log_lines"
      " WHERE instance_id = $1 AND run = (SELECT run FROM core.log_lines WHERE instance_id = $1 ORDER BY id DESC LIMIT 1)"
      " ORDER BY id DESC LIMIT $2",
      instance_id, limit);
  Json out = Json::array();
  for (auto r = rows.rbegin(); r != rows.rend(); ++r)
    out.push_back({{"at", (*r)[0].as<std::string>()}, {"stream", (*r)[1].as<std::string>()},
                   {"message", (*r)[2].as<std::string>()}});
  return out;
}

std::map<std::string, Json> last_lines(pqxx::transaction_base& tx, const std::vector<std::string>& instance_ids) {
  std::map<std::string, Json> out;
  if (instance_ids.empty()) return out;
  Json ids = instance_ids;
  for (const auto& r : tx.exec_params(
           "SELECT i.id, " + db::sql_rfc3339("l.at") + ", l.stream, l.message"
           " FROM jsonb_array_elements_text($1::jsonb) AS i(id) CROSS JOIN LATERAL"
           " (SELECT at, stream, message FROM core.log_lines WHERE instance_id = i.id ORDER BY id DESC LIMIT 1) l",
           ids.dump()))
    out[r[0].as<std::string>()] = {{"at", r[1].as<std::string>()}, {"stream", r[2].as<std::string>()},
                                   {"message", r[3].as<std::string>()}};
  return out;
}

std::int64_t expire_logs(pqxx::work& tx, std::chrono::hours retention) {
  auto r = tx.exec_params("DELETE FROM core.log_lines WHERE at < now() - make_interval(hours => $1)",
                          static_cast<int>(retention.count()));
  return static_cast<std::int64_t>(r.affected_rows());
}

}  // namespace platform::api
