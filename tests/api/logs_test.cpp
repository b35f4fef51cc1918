// Reading an env's logs by cursor against a real database: lines come in (transaction, id) order
// across pages, each once, also where transaction ids gain a digit (9 -> 10), which a text ordering
// would put first (a bug the microvm end-to-end test found).
#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include "api/logs.h"
#include "engine/db.h"
#include "engine/error.h"
#include "tests/support/pg.h"

namespace platform {
namespace {

TEST(Logs, PagesFollowTransactionOrderEachLineOnceAcrossADigitBoundary) {
  pqxx::connection c(harness::fresh_database());
  {
    pqxx::work tx(c);
    // Written by transactions 9, 10 and 11 (ids chosen so every one is long committed, below the horizon).
    for (int t : {9, 10, 11})
      tx.exec_params("INSERT INTO core.log_lines (org_id, env_id, instance_id, instance_name, process, run, stream,"
                     " byte_offset, at, message, tx_id)"
                     " VALUES ('org_1', 'env_1', 'ins_1', 'web-1', 'web', 'ins_1-r0', 'stdout', $1::bigint,"
                     " '2026-11-22T09:00:00Z'::timestamptz + make_interval(secs => $1::bigint), 'line ' || $1::bigint, $1::bigint::text::xid8)",
                     t);
    tx.commit();
  }
  api::LogQuery q;
  q.env_id = "env_1";
  q.source = "app";
  q.limit = 2;
  std::vector<std::string> seen;
  for (int page = 0; page < 5; ++page) {
    pqxx::work tx(c);
    auto out = api::read_logs(tx, q);
    if (out["lines"].empty()) break;
    for (const auto& l : out["lines"]) seen.push_back(l["message"].get<std::string>());
    q.cursor = out["next"].get<std::string>();
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"line 9", "line 10", "line 11"}));
}

// A change the agent reported is placed by when the agent saw it (the clock that stamps the app's
// lines), not by when the control plane recorded it: "InstanceStarted" comes before the app's first
// line even when the report reached the API after that line. Changes the control plane made itself
// (no reported time) go by when they were recorded. --since and --until filter on the same time.
TEST(Logs, AgentReportedChangesAreOrderedByTheAgentsClock) {
  pqxx::connection c(harness::fresh_database());
  {
    pqxx::work tx(c);
    tx.exec("SET LOCAL session_replication_role = replica");  // no resources, release or host to refer to
    tx.exec("INSERT INTO core.instances (id, name, ordinal, org_id, app_id, env_id, process, release_id, host_id, cpu,"
            " memory_mib, desired, desired_reason, assign_version)"
            " VALUES ('ins_1', 'web-1', 1, 'org_1', 'app_1', 'env_1', 'web', 'rel_1', 'hst_1', 1, 256, 'run', 'test', 1)");
    tx.exec("INSERT INTO core.log_lines (org_id, env_id, instance_id, instance_name, process, run, stream,"
            " byte_offset, at, message)"
            " VALUES ('org_1', 'env_1', 'ins_1', 'web-1', 'web', 'ins_1-r0', 'stdout', 0, '2026-11-22T09:00:01Z',"
            " 'listening')");
    tx.exec("INSERT INTO events (stream_name, category, stream_version, event_id, type, data) VALUES"
            " ('instance-ins_1', 'instance', 0, gen_random_uuid(), 'InstancePlaced', '{}'),"
            " ('instance-ins_1', 'instance', 1, gen_random_uuid(), 'InstanceStarted',"
            "  '{\"reported_at\": \"2026-11-22T09:00:00.500000Z\"}')");
    tx.commit();
  }
  auto messages = [&](const std::string& since) {
    api::LogQuery q;
    q.env_id = "env_1";
    q.since = since;
    pqxx::work tx(c);
    std::vector<std::string> out;
    const auto page = api::read_logs(tx, q);
    for (const auto& l : page["lines"]) out.push_back(l["at"].get<std::string>() + " " + l["message"].get<std::string>());
    return out;
  };
  auto all = messages("");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0], "2026-11-22T09:00:00.500000Z InstanceStarted");
  EXPECT_EQ(all[1], "2026-11-22T09:00:01.000000Z listening");
  EXPECT_NE(all[2].find(" InstancePlaced"), std::string::npos);  // recorded now, long after
  auto later = messages("2026-11-22T09:00:00.600000Z");
  ASSERT_EQ(later.size(), 2u);
  EXPECT_EQ(later[0], "2026-11-22T09:00:01.000000Z listening");
}

// `platform logs --tail N`: the newest N lines of both sources merged by time, oldest first, and a cursor
// after them, so a follower gets only what comes next. A tail cannot start from a cursor.
TEST(Logs, TailIsTheNewestLinesOfBothSourcesAndFollowingGoesOnAfterThem) {
  pqxx::connection c(harness::fresh_database());
  auto write = [&](const std::string& sql) {
    pqxx::work tx(c);
    tx.exec("SET LOCAL session_replication_role = replica");  // no resources, release or host to refer to
    tx.exec(sql);
    tx.commit();
  };
  write("INSERT INTO core.instances (id, name, ordinal, org_id, app_id, env_id, process, release_id, host_id, cpu,"
        " memory_mib, desired, desired_reason, assign_version)"
        " VALUES ('ins_1', 'web-1', 1, 'org_1', 'app_1', 'env_1', 'web', 'rel_1', 'hst_1', 1, 256, 'run', 'test', 1)");
  write("INSERT INTO events (stream_name, category, stream_version, event_id, type, data) VALUES"
        " ('instance-ins_1', 'instance', 0, gen_random_uuid(), 'InstanceStarted',"
        "  '{\"reported_at\": \"2026-11-22T09:00:00.500000Z\"}')");
  auto line = [&](int n) {
    write("INSERT INTO core.log_lines (org_id, env_id, instance_id, instance_name, process, run, stream, byte_offset,"
          " at, message) VALUES ('org_1', 'env_1', 'ins_1', 'web-1', 'web', 'ins_1-r0', 'stdout', " +
          std::to_string(n) + ", '2026-11-22T09:00:0" + std::to_string(n) + "Z', 'line " + std::to_string(n) + "')");
  };
  for (int n = 1; n <= 5; ++n) line(n);
  write("INSERT INTO events (stream_name, category, stream_version, event_id, type, data) VALUES"
        " ('instance-ins_1', 'instance', 1, gen_random_uuid(), 'InstanceExited',"
        "  '{\"reported_at\": \"2026-11-22T09:00:04.500000Z\", \"reason\": \"exit status 1\"}')");
  auto read = [&](api::LogQuery q) {
    q.env_id = "env_1";
    pqxx::work tx(c);
    auto page = api::read_logs(tx, q);
    std::vector<std::string> messages;
    for (const auto& l : page["lines"]) messages.push_back(l["message"].get<std::string>());
    return std::pair{messages, page["next"].get<std::string>()};
  };
  api::LogQuery q;
  q.tail = 3;
  auto [tail, next] = read(q);
  EXPECT_EQ(tail, (std::vector<std::string>{"line 4", "InstanceExited: exit status 1", "line 5"}));
  q.source = "app";
  EXPECT_EQ(read(q).first, (std::vector<std::string>{"line 3", "line 4", "line 5"}));
  q.source = "system";
  q.tail = 10;
  EXPECT_EQ(read(q).first, (std::vector<std::string>{"InstanceStarted", "InstanceExited: exit status 1"}));
  q = {};
  q.tail = 2;
  q.until = "2026-11-22T09:00:03Z";  // the tail of a window
  EXPECT_EQ(read(q).first, (std::vector<std::string>{"line 1", "line 2"}));

  line(6);
  api::LogQuery follow;
  follow.cursor = next;
  EXPECT_EQ(read(follow).first, (std::vector<std::string>{"line 6"}));
  follow.tail = 5;
  EXPECT_THROW(read(follow), PlatformError);
}

// What an instance wrote last (`instance describe`, `status`): the tail of its latest run only, both
// streams, oldest first; another instance's later lines are not its own.
TEST(Logs, LastOutputIsTheTailOfTheLatestRunOldestFirst) {
  pqxx::connection c(harness::fresh_database());
  {
    pqxx::work tx(c);
    auto line = [&](const std::string& instance, const std::string& run, const std::string& stream, int offset,
                    const std::string& message) {
      tx.exec_params("INSERT INTO core.log_lines (org_id, env_id, instance_id, instance_name, process, run, stream,"
                     " byte_offset, at, message) VALUES ('org_1', 'env_1', $1, 'web-1', 'web', $2, $3, $4::int,"
                     " '2026-11-22T09:00:00Z'::timestamptz + make_interval(secs => $4::int), $5)",
                     instance, run, stream, offset, message);
    };
    line("ins_1", "ins_1-r0", "stdout", 0, "first run");
    line("ins_1", "ins_1-r0", "stderr", 1, "first run failed");
    for (int i = 0; i < 12; ++i) line("ins_1", "ins_1-r1", i % 2 ? "stderr" : "stdout", 10 + i, "line " + std::to_string(i));
    line("ins_2", "ins_2-r0", "stdout", 100, "another instance");
    tx.commit();
  }
  pqxx::work tx(c);
  auto tail = api::last_output(tx, "ins_1", 10);
  ASSERT_EQ(tail.size(), 10u) << tail.dump();
  EXPECT_EQ(tail[0]["message"], "line 2");
  EXPECT_EQ(tail[9]["message"], "line 11");
  EXPECT_EQ(tail[9]["stream"], "stderr");
  EXPECT_EQ(tail[9]["at"], "2026-11-22T09:00:21.000000Z");
  auto one = api::last_output(tx, "ins_1", 1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0]["message"], "line 11");
  EXPECT_EQ(api::last_output(tx, "ins_2", 10).size(), 1u);
  EXPECT_TRUE(api::last_output(tx, "ins_3", 10).empty());
  // Several at once (status): each one's very last line; one that wrote nothing is absent.
  auto last = api::last_lines(tx, {"ins_1", "ins_2", "ins_3"});
  ASSERT_EQ(last.size(), 2u);
  EXPECT_EQ(last["ins_1"]["message"], "line 11");
  EXPECT_EQ(last["ins_2"]["message"], "another instance");
  EXPECT_TRUE(api::last_lines(tx, {}).empty());
}

}  // namespace
}  // namespace platform
