// The event log against a real PostgreSQL: idempotency, expected versions, concurrency, the horizon.
#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <thread>

#include "engine/db.h"
#include "engine/event_store.h"
#include "engine/ids.h"
#include "tests/support/pg.h"

using namespace platform;

namespace {
events::NewEvent ev(const std::string& type, const std::string& id = uuid_to_string(new_uuid_v7())) {
  return {id, type, 1, {{"n", 1}}, {{"actor", "test"}}};
}

// The stream holds exactly versions 0 .. n-1: no gap, no duplicate.
void expect_dense_versions(const std::string& conninfo, const std::string& stream, int n) {
  pqxx::connection c(conninfo);
  pqxx::work tx(c);
  auto r = tx.exec_params("SELECT count(*), count(DISTINCT stream_version), min(stream_version), max(stream_version)"
                          " FROM events WHERE stream_name = $1",
                          stream);
  EXPECT_EQ(r[0][0].as<int>(), n) << stream;
  EXPECT_EQ(r[0][1].as<int>(), n) << stream;
  EXPECT_EQ(r[0][2].as<int>(), 0) << stream;
  EXPECT_EQ(r[0][3].as<int>(), n - 1) << stream;
}
}  // namespace

TEST(EventLog, DuplicateEventIdsReturnTheOriginalResult) {
  auto conninfo = harness::fresh_database();
  pqxx::connection c(conninfo);
  auto e1 = ev("Thing"), e2 = ev("Thing");
  std::vector<events::Appended> first, again;
  {
    pqxx::work tx(c);
    first = events::append(tx, "thing-1", -1, {e1, e2});
    tx.commit();
  }
  {
    pqxx::work tx(c);
    again = events::append(tx, "thing-1", -1, {e1, e2});  // would fail the version check if not a duplicate
    tx.commit();
  }
  ASSERT_EQ(again.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(again[i].duplicate);
    EXPECT_FALSE(first[i].duplicate);
    EXPECT_EQ(again[i].position, first[i].position);
    EXPECT_EQ(again[i].stream_version, first[i].stream_version);
  }
  pqxx::work tx(c);
  EXPECT_EQ(tx.exec("SELECT count(*) FROM events WHERE stream_name = 'thing-1'")[0][0].as<int>(), 2);
}

TEST(EventLog, PartialDuplicateIsRefused) {
  auto conninfo = harness::fresh_database();
  db::Pool pool(conninfo, 2);
  auto e1 = ev("Thing");
  pool.transact([&](pqxx::work& tx) { events::append(tx, "thing-2", std::nullopt, {e1}); });
  try {
    pool.transact([&](pqxx::work& tx) { events::append(tx, "thing-2", std::nullopt, {e1, ev("Thing")}); });
    FAIL() << "expected idempotency_conflict";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.error().code, ErrorCode::idempotency_conflict);
  }
}

TEST(EventLog, StaleExpectedVersionFailsWithItsOwnCode) {
  auto conninfo = harness::fresh_database();
  db::Pool pool(conninfo, 2);
  pool.transact([&](pqxx::work& tx) { events::append(tx, "acct-1", -1, {ev("Opened")}); });
  pool.transact([&](pqxx::work& tx) { events::append(tx, "acct-1", 0, {ev("Changed")}); });
  try {
    pool.transact([&](pqxx::work& tx) { events::append(tx, "acct-1", 0, {ev("Changed")}); });
    FAIL() << "expected version_conflict";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.error().code, ErrorCode::version_conflict);
    EXPECT_EQ(http_status(e.error().code), 409);
    EXPECT_EQ(exit_code(e.error().code), 6);
    EXPECT_NE(e.error().message.find("acct-1: expected 0, but version 1 was appended"), std::string::npos)
        << e.error().message;
  }
  // An expected version ahead of the stream would leave a gap: refused, nothing written.
  try {
    pool.transact([&](pqxx::work& tx) { events::append(tx, "acct-1", 5, {ev("Changed")}); });
    FAIL() << "expected version_conflict";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.error().code, ErrorCode::version_conflict);
    EXPECT_NE(e.error().message.find("expected 5, stream is at 1"), std::string::npos) << e.error().message;
  }
  // A new stream with an expected version other than -1 likewise.
  EXPECT_THROW(pool.transact([&](pqxx::work& tx) { events::append(tx, "acct-2", 0, {ev("Opened")}); }), PlatformError);
  pqxx::connection c(conninfo);
  pqxx::work tx(c);
  EXPECT_EQ(tx.exec("SELECT count(*) FROM events WHERE stream_name IN ('acct-1', 'acct-2')")[0][0].as<int>(), 2);
}

// Writers that state an expected version (the single-event statement) race writers that append at any
// version (append_events) on one stream: the unique indexes and the shared stream lock leave no gap and
// no duplicate, an any-version append never fails, and an expected-version append fails only with
// version_conflict (then re-reads and retries).
TEST(EventLog, ExpectedAndAnyVersionWritersShareOneStreamSafely) {
  auto conninfo = harness::fresh_database();
  constexpr int kWriters = 6, kEach = 30;
  std::atomic<int> failures{0}, conflicts{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w)
    threads.emplace_back([&, w] {
      try {
        db::Pool pool(conninfo, 1);
        for (int i = 0; i < kEach; ++i) {
          if (w % 2 == 0) {
            pool.transact([&](pqxx::work& tx) { events::append(tx, "mixed-1", std::nullopt, {ev("Any")}); });
            continue;
          }
          for (int attempt = 0;; ++attempt) {
            ASSERT_LT(attempt, 1000) << "an expected-version writer never got through";
            auto at = pool.read([&](pqxx::transaction_base& tx) {
              return tx.exec("SELECT coalesce(max(stream_version), -1) FROM events WHERE stream_name = 'mixed-1'")[0][0]
                  .as<std::int64_t>();
            });
            try {
              auto r = pool.transact([&](pqxx::work& tx) { return events::append(tx, "mixed-1", at, {ev("Expected")}); });
              EXPECT_EQ(r.at(0).stream_version, at + 1);
              break;
            } catch (const PlatformError& e) {
              ASSERT_EQ(e.error().code, ErrorCode::version_conflict) << e.error().message;
              conflicts++;
            }
          }
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
        failures++;
      }
    });
  for (auto& t : threads) t.join();
  ASSERT_EQ(failures, 0);
  expect_dense_versions(conninfo, "mixed-1", kWriters * kEach);
  pqxx::connection c(conninfo);
  pqxx::work tx(c);
  EXPECT_EQ(tx.exec("SELECT count(*) FROM events WHERE stream_name = 'mixed-1' AND type = 'Expected'")[0][0].as<int>(),
            kWriters / 2 * kEach);
  std::printf("expected-version retries after a conflict: %d\n", conflicts.load());
}

// Two writers state the same expected version; the second waits on the stream lock while the first
// is open, and once the first commits it is refused with version_conflict (not a raw unique violation).
TEST(EventLog, TheSecondOfTwoRacingExpectedVersionWritersIsToldWhy) {
  auto conninfo = harness::fresh_database();
  db::Pool pool(conninfo, 2);
  pool.transact([&](pqxx::work& tx) { events::append(tx, "race-1", -1, {ev("Opened")}); });
  pqxx::connection first_conn(conninfo);
  pqxx::work first(first_conn);
  events::append(first, "race-1", 0, {ev("First")});
  std::optional<Error> second_error;
  std::thread second([&] {
    try {
      pool.transact([&](pqxx::work& tx) { events::append(tx, "race-1", 0, {ev("Second")}); });
    } catch (const PlatformError& e) {
      second_error = e.error();
    }
  });
  // Wait until the second writer is blocked on the stream lock, then let the first commit.
  pqxx::connection probe(conninfo);
  for (int i = 0; i < 200; ++i) {
    pqxx::nontransaction q(probe);
    if (q.exec("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").size() == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  first.commit();
  second.join();
  ASSERT_TRUE(second_error.has_value());
  EXPECT_EQ(second_error->code, ErrorCode::version_conflict);
  EXPECT_NE(second_error->message.find("expected 0, but version 1 was appended by another writer first"),
            std::string::npos)
      << second_error->message;
}

// Replaying an expected-version append with the same event id returns the original row, whichever
// version the caller now states.
TEST(EventLog, SingleEventDuplicateReturnsTheOriginal) {
  auto conninfo = harness::fresh_database();
  db::Pool pool(conninfo, 1);
  auto e = ev("Opened");
  auto first = pool.transact([&](pqxx::work& tx) { return events::append(tx, "dup-1", -1, {e}); });
  auto again = pool.transact([&](pqxx::work& tx) { return events::append(tx, "dup-1", -1, {e}); });
  ASSERT_EQ(again.size(), 1u);
  EXPECT_FALSE(first[0].duplicate);
  EXPECT_TRUE(again[0].duplicate);
  EXPECT_EQ(again[0].position, first[0].position);
  EXPECT_EQ(again[0].tx, first[0].tx);
}

TEST(EventLog, ConcurrentAppendsToOneStreamLeaveNoGapAndNoDuplicate) {
  auto conninfo = harness::fresh_database();
  constexpr int kWriters = 8, kEach = 40;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int w = 0; w < kWriters; ++w)
    threads.emplace_back([&] {
      try {
        pqxx::connection c(conninfo);
        for (int i = 0; i < kEach; ++i) {
          pqxx::work tx(c);
          events::append(tx, "hot-1", std::nullopt, {ev("Tick")});
          tx.commit();
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
        failures++;
      }
    });
  for (auto& t : threads) t.join();
  ASSERT_EQ(failures, 0);
  expect_dense_versions(conninfo, "hot-1", kWriters * kEach);
}

TEST(EventLog, EventsAreAppendOnly) {
  auto conninfo = harness::fresh_database();
  pqxx::connection c(conninfo);
  {
    pqxx::work tx(c);
    events::append(tx, "x-1", -1, {ev("A")});
    tx.commit();
  }
  for (const char* sql : {"UPDATE events SET type = 'B'", "DELETE FROM events", "TRUNCATE events"}) {
    pqxx::work tx(c);
    try {
      tx.exec(sql);
      FAIL() << sql << " was allowed";
    } catch (const pqxx::sql_error& e) {
      EXPECT_EQ(std::string(e.sqlstate()), "PA001") << sql;
    }
  }
}

// A transaction that drew the lower position commits after a later one: a reader below the horizon
// never returns the later event first, so advancing its cursor can never skip the earlier one.
TEST(EventLog, HorizonHoldsBackLaterCommitsUntilEarlierOnesFinish) {
  auto conninfo = harness::fresh_database();
  pqxx::connection slow_conn(conninfo), fast_conn(conninfo), reader(conninfo);
  pqxx::work slow(slow_conn);
  auto a = events::append(slow, "slow-1", -1, {ev("Slow")});  // lower position, still open
  {
    pqxx::work fast(fast_conn);
    events::append(fast, "fast-1", -1, {ev("Fast")});
    fast.commit();
  }
  events::Cursor cursor;
  std::vector<std::string> seen;
  {
    pqxx::work tx(reader);
    auto page = events::read_after(tx, cursor, {}, 100);
    EXPECT_TRUE(page.events.empty()) << "the committed later event must wait behind the open earlier one";
    EXPECT_TRUE(page.held_back);
    cursor = page.next;
    // The filtered statement (planned per call) answers the same.
    events::Filter only_fast;
    only_fast.type = "Fast";
    auto filtered = events::read_after(tx, cursor, only_fast, 100);
    EXPECT_TRUE(filtered.events.empty());
    EXPECT_TRUE(filtered.held_back);
  }
  slow.commit();
  {
    pqxx::work tx(reader);
    auto page = events::read_after(tx, cursor, {}, 100);
    for (const auto& e : page.events) seen.push_back(e.type);
    EXPECT_FALSE(page.held_back) << "nothing is left above the horizon";
    // A page cut short by the limit continues where it stopped.
    auto first = events::read_after(tx, cursor, {}, 1);
    ASSERT_EQ(first.events.size(), 1u);
    EXPECT_EQ(first.events[0].type, "Slow");
    auto second = events::read_after(tx, first.next, {}, 1);
    ASSERT_EQ(second.events.size(), 1u);
    EXPECT_EQ(second.events[0].type, "Fast");
    auto none = events::read_after(tx, second.next, {}, 1);
    EXPECT_TRUE(none.events.empty());
    EXPECT_FALSE(none.held_back);
    EXPECT_EQ(none.next, second.next);
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"Slow", "Fast"}));
  EXPECT_GT(a[0].position, 0);
}

// A tail (`events -n N`): the newest N that match, oldest first, every filter in SQL (a type prefix too),
// nothing above the horizon; and its cursor lets a reader go on without skipping the event that was
// held back.
TEST(EventLog, TailIsTheNewestThatMatchAndItsCursorSkipsNothing) {
  auto conninfo = harness::fresh_database();
  pqxx::connection writer(conninfo), slow_conn(conninfo), reader(conninfo);
  for (int i = 0; i < 5; ++i) {
    pqxx::work tx(writer);
    events::append(tx, "app-" + std::to_string(i), -1, {ev(i % 2 ? "AppCreated" : "EnvCreated")});
    tx.commit();
  }
  pqxx::work slow(slow_conn);
  events::append(slow, "slow-1", -1, {ev("AppSlow")});  // open: above the horizon until it commits
  {
    pqxx::work tx(writer);
    events::append(tx, "app-late", -1, {ev("AppLate")});
    tx.commit();
  }
  events::Cursor next;
  {
    pqxx::work tx(reader);
    auto all = events::read_tail(tx, {}, 3);
    ASSERT_EQ(all.events.size(), 3u);
    EXPECT_EQ(all.events[0].stream, "app-2");
    EXPECT_EQ(all.events[2].stream, "app-4");  // app-late waits behind the open transaction
    events::Filter apps;
    apps.type = "App*";
    auto only = events::read_tail(tx, apps, 5);
    ASSERT_EQ(only.events.size(), 2u);  // app-1 and app-3: the rows read are ones that match
    EXPECT_EQ(only.events[0].stream, "app-1");
    EXPECT_EQ(only.events[1].stream, "app-3");
    EXPECT_EQ(only.next, all.next) << "the cursor is the head, matching or not";
    next = all.next;
  }
  slow.commit();
  pqxx::work tx(reader);
  std::vector<std::string> after;
  for (const auto& e : events::read_after(tx, next, {}, 100).events) after.push_back(e.stream);
  EXPECT_EQ(after, (std::vector<std::string>{"slow-1", "app-late"}));
  pqxx::connection empty_conn(harness::fresh_database());
  pqxx::work empty(empty_conn);
  auto nothing = events::read_tail(empty, {}, 10);
  EXPECT_TRUE(nothing.events.empty());
  EXPECT_EQ(nothing.next, events::Cursor{});
}

// Cursors compare transaction ids as numbers. A reader that ordered them as text would put xid 1039
// before 731 and skip events once the cluster's xids gain a digit; burn xids across that boundary.
TEST(EventLog, CursorOrderIsNumericAcrossAnXidDigitBoundary) {
  auto conninfo = harness::fresh_database();
  pqxx::connection c(conninfo);
  std::vector<events::Appended> before, after;
  {
    pqxx::work tx(c);
    before = events::append(tx, "digits-1", -1, {ev("Before")});
    tx.commit();
  }
  std::uint64_t boundary = 10;
  while (boundary <= before[0].tx) boundary *= 10;
  auto to_burn = boundary - before[0].tx;
  if (to_burn > 300000) GTEST_SKIP() << "the next xid digit boundary is " << to_burn << " xids away";
  {
    // Each BEGIN ... EXCEPTION block is a subtransaction that takes its own xid when it writes.
    pqxx::work tx(c);
    tx.exec("CREATE TEMP TABLE burn (n int) ON COMMIT DROP");
    tx.exec("DO $$ BEGIN FOR i IN 1.." + std::to_string(to_burn) +
            " LOOP BEGIN INSERT INTO burn VALUES (i); EXCEPTION WHEN others THEN NULL; END; END LOOP; END $$");
    tx.commit();
  }
  {
    pqxx::work tx(c);
    after = events::append(tx, "digits-1", 0, {ev("After")});
    tx.commit();
  }
  ASSERT_GE(after[0].tx, boundary);
  pqxx::work tx(c);
  auto page = events::read_after(tx, {}, {}, 100);
  std::vector<std::string> seen;
  for (const auto& e : page.events) seen.push_back(e.type);
  EXPECT_EQ(seen, (std::vector<std::string>{"Before", "After"}));
  auto head = events::head(tx);
  EXPECT_EQ(head.tx, after[0].tx);
  EXPECT_EQ(head.pos, after[0].position);
  auto rest = events::read_after(tx, events::Cursor{before[0].tx, before[0].position}, {}, 100);
  ASSERT_EQ(rest.events.size(), 1u);
  EXPECT_EQ(rest.events[0].type, "After");
}

namespace {
struct Counter : pqxx::notification_receiver {
  Counter(pqxx::connection_base& c) : pqxx::notification_receiver(c, "platform_events") {}
  void operator()(const std::string&, int) override { ++count; }
  int count = 0;
};

// Waits up to five seconds for at least one notification; returns how many arrived.
int await_wakeups(pqxx::connection& c, Counter& n) {
  for (int i = 0; i < 50 && n.count == 0; ++i) c.await_notification(0, 100000);
  return n.count;
}
}  // namespace

// A plain session (psql, a script) gets its NOTIFY from append_events; a pool transaction gets it from
// the doorbell after commit. Both wake a listener, each once per transaction.
TEST(EventLog, EveryWriterWakesListenersOncePerTransaction) {
  auto conninfo = harness::fresh_database();
  pqxx::connection listener(conninfo), plain(conninfo);
  Counter n(listener);
  {
    pqxx::work tx(plain);
    events::append(tx, "wake-1", std::nullopt, {ev("A")});
    events::append(tx, "wake-2", std::nullopt, {ev("B")});
    tx.commit();
  }
  EXPECT_EQ(await_wakeups(listener, n), 1);
  n.count = 0;
  {
    pqxx::work tx(plain);  // the single-event statement (an expected version) notifies once, too
    events::append(tx, "wake-3", -1, {ev("A")});
    events::append(tx, "other-1", -1, {ev("B")});
    events::append(tx, "wake-1", std::nullopt, {ev("C")});
    tx.commit();
  }
  EXPECT_EQ(await_wakeups(listener, n), 1);
  listener.await_notification(0, 300000);
  EXPECT_EQ(n.count, 1);
  n.count = 0;
  db::Pool pool(conninfo, 2);
  pool.transact([&](pqxx::work& tx) {
    events::append(tx, "wake-1", std::nullopt, {ev("C")});
    // On a pool connection append_events leaves the NOTIFY to the doorbell: none may be queued in
    // the transaction itself (it would hold the global notify lock through the commit flush).
    EXPECT_EQ(tx.exec("SELECT current_setting('platform.notify_after_commit', true)")[0][0].as<std::string>(), "on");
  });
  EXPECT_EQ(await_wakeups(listener, n), 1);
  n.count = 0;
  pool.read([&](pqxx::transaction_base& tx) { return tx.exec("SELECT count(*) FROM events"); });  // rings nothing
  listener.await_notification(0, 300000);
  EXPECT_EQ(n.count, 0);
}

TEST(Migrations, AppliedOnceAndEditedOnesAreRefused) {
  auto conninfo = harness::fresh_database();
  auto again = db::migrate(conninfo);
  EXPECT_TRUE(again.applied.empty());
  EXPECT_FALSE(again.present.empty());
  {
    pqxx::connection c(conninfo);
    pqxx::work tx(c);
    tx.exec("UPDATE schema_migrations SET checksum = 'edited' WHERE name = '0001_event_log.sql'");
    tx.commit();
  }
  try {
    db::migrate(conninfo);
    FAIL() << "an edited migration was accepted";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.error().code, ErrorCode::precondition_failed);
    EXPECT_NE(e.error().message.find("0001_event_log.sql"), std::string::npos);
  }
}

// Idle pool connections whose backends are gone (what a PostgreSQL restart leaves behind) do not fail
// the next requests: the first BEGIN that finds one broken drops them all and begins again on a fresh
// connection, for reads and for writes.
TEST(EventLog, ThePoolReplacesConnectionsThatDiedWhileIdle) {
  auto conninfo = harness::fresh_database();
  db::Pool pool(conninfo, 4, "pool-under-test");
  {
    std::vector<db::Pool::Lease> warm;  // four idle connections
    for (int i = 0; i < 4; ++i) warm.push_back(pool.acquire());
  }
  ASSERT_EQ(pool.open_connections(), 4u);
  {
    pqxx::connection admin(conninfo);
    pqxx::nontransaction tx(admin);
    auto killed = tx.exec("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE application_name = 'pool-under-test') t");
    ASSERT_EQ(killed[0][0].as<int>(), 4);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the backends are gone
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(pool.read([](pqxx::transaction_base& tx) { return tx.exec("SELECT 1")[0][0].as<int>(); }), 1);
  EXPECT_NO_THROW(pool.transact([](pqxx::work& tx) {
    events::append(tx, "pool-1", -1, {ev("AfterRestart")});
  }));
  EXPECT_LE(pool.open_connections(), 4u);
}
