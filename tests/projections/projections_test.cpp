// Projections against a real PostgreSQL: exactly-once folding under two runners, rebuild equality,
// and kill -9 of platformd in the middle of a batch.
#include <gtest/gtest.h>

#include <thread>

#include "api/auth.h"
#include "api/resources.h"
#include "engine/db.h"
#include "engine/ids.h"
#include "projections/runner.h"
#include "tests/support/pg.h"
#include "tests/support/process.h"

using namespace platform;

namespace {
// An org with `n` projects, created through the same command functions the API uses.
void seed(const std::string& conninfo, int n) {
  db::Pool pool(conninfo, 1);
  std::string org;
  pool.transact([&](pqxx::work& tx) {
    auto user = api::ensure_user(tx, "seed");
    api::Actor a{user, new_id("req"), new_id("op"), "org.create", "seed"};
    auto r = tx.exec("SELECT id FROM core.resources WHERE kind = 'org' AND name = 'seed'");
    org = r.empty() ? api::create_resource(tx, a, *api::kind_by_name("org"), "", "", "seed", "", Json::object()).resource_id
                    : r[0][0].as<std::string>();
  });
  auto user = pool.transact([&](pqxx::work& tx) { return api::ensure_user(tx, "seed"); });
  for (int i = 0; i < n; i += 50)
    pool.transact([&](pqxx::work& tx) {
      for (int j = i; j < std::min(n, i + 50); ++j) {
        api::Actor a{user, new_id("req"), new_id("op"), "project.create", "seed"};
        api::create_resource(tx, a, *api::kind_by_name("project"), org, org, "p" + std::to_string(j), "", Json::object());
      }
    });
}

std::string dump(const std::string& conninfo) {
  pqxx::connection c(conninfo);
  pqxx::work tx(c);
  return tx.exec("SELECT coalesce(json_agg(t ORDER BY id)::text, '') FROM read_model.resources t")[0][0].as<std::string>() +
         tx.exec("SELECT coalesce(json_agg(t ORDER BY id)::text, '') FROM read_model.operations t")[0][0].as<std::string>();
}

std::int64_t total_events(const std::string& conninfo) {
  pqxx::connection c(conninfo);
  pqxx::work tx(c);
  return tx.exec("SELECT count(*) FROM events")[0][0].as<std::int64_t>();
}

void fold_to_end(const std::string& conninfo, const std::string& name) {
  Signal never;
  projections::Runner r(projections::by_name(name), {conninfo, "test", 200, false, {}}, &never);
  pqxx::connection c(conninfo);
  {
    pqxx::work tx(c);
    tx.exec_params("INSERT INTO projection.checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING", name);
    tx.commit();
  }
  while (r.run_batch(c).outcome != projections::BatchOutcome::idle) {
  }
}
}  // namespace

TEST(Projections, TwoRunnersWithoutLeaseStillFoldEveryEventExactlyOnce) {
  auto conninfo = harness::fresh_database();
  seed(conninfo, 600);
  Signal never;
  std::atomic<int> fenced{0};
  auto work = [&](const char* id) {
    projections::Runner r(projections::by_name("resources"), {conninfo, id, 50, false, {}}, &never);
    pqxx::connection c(conninfo);
    {
      pqxx::work tx(c);
      tx.exec("INSERT INTO projection.checkpoints (name) VALUES ('resources') ON CONFLICT DO NOTHING");
      tx.commit();
    }
    for (;;) {
      auto res = r.run_batch(c);
      if (res.outcome == projections::BatchOutcome::fenced_out) fenced++;
      if (res.outcome == projections::BatchOutcome::idle && !res.held_back) break;
    }
  };
  std::thread a(work, "runner-a"), b(work, "runner-b");
  a.join();
  b.join();
  pqxx::connection c(conninfo);
  pqxx::work tx(c);
  // Every event counted once: two runners never both advanced over the same batch.
  EXPECT_EQ(tx.exec("SELECT events FROM projection.checkpoints WHERE name = 'resources'")[0][0].as<std::int64_t>(),
            total_events(conninfo));
  EXPECT_EQ(tx.exec("SELECT count(*) FROM read_model.resources WHERE kind = 'project'")[0][0].as<int>(), 600);
  std::cout << "batches discarded by the fence: " << fenced << "\n";
}

TEST(Projections, RebuildEqualsTheLiveProjection) {
  auto conninfo = harness::fresh_database();
  seed(conninfo, 120);
  fold_to_end(conninfo, "resources");
  fold_to_end(conninfo, "operations");
  auto live = dump(conninfo);
  ASSERT_NE(live.find("project"), std::string::npos);
  auto r1 = projections::rebuild(conninfo, "resources");
  EXPECT_EQ(projections::rebuild(conninfo, "operations").events, r1.events);
  EXPECT_TRUE(r1.folded_here);
  EXPECT_EQ(r1.events, total_events(conninfo));
  EXPECT_EQ(dump(conninfo), live);
  EXPECT_THROW(projections::rebuild(conninfo, "nope"), PlatformError);
}

TEST(Projections, KillNineMidBatchThenRestartEqualsRebuild) {
  auto conninfo = harness::fresh_database();
  seed(conninfo, 300);
  auto log = (harness::PgEnvironment::get().root() / "crash.log").string();
  {
    // Each batch pauses 400 ms before committing, so the kill lands inside an open batch transaction.
    harness::Child serve({PLATFORMD_BIN, "serve", "--database", conninfo, "--roles", "projections",
                          "--projection-batch-pause-ms", "400"},
                         log);
    pqxx::connection c(conninfo);
    bool in_batch = false;
    for (int i = 0; i < 200 && !in_batch; ++i) {
      pqxx::work tx(c);
      in_batch = tx.exec("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'projection:resources'"
                         " AND state = 'idle in transaction'")[0][0].as<int>() > 0;
      tx.commit();
      if (!in_batch) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(in_batch) << "the runner never entered a batch";
    serve.signal(SIGKILL);
    serve.wait();
  }
  {
    pqxx::connection c(conninfo);
    pqxx::work tx(c);
    auto done = tx.exec("SELECT coalesce(max(events), 0) FROM projection.checkpoints WHERE name = 'resources'")[0][0].as<std::int64_t>();
    EXPECT_LT(done, total_events(conninfo)) << "the kill should have interrupted the fold";
  }
  {
    harness::Child serve({PLATFORMD_BIN, "serve", "--database", conninfo, "--roles", "projections"}, log);
    auto target = total_events(conninfo);
    for (int i = 0; i < 600; ++i) {
      pqxx::connection c(conninfo);
      pqxx::work tx(c);
      auto r = tx.exec("SELECT min(events) FROM projection.checkpoints");
      if (!r[0][0].is_null() && r[0][0].as<std::int64_t>() >= target &&
          tx.exec("SELECT count(*) FROM projection.checkpoints")[0][0].as<int>() == 2)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    serve.signal(SIGTERM);
    EXPECT_NE(serve.wait(), -1);
  }
  auto live = dump(conninfo);
  projections::rebuild(conninfo, "resources");
  projections::rebuild(conninfo, "operations");
  EXPECT_EQ(dump(conninfo), live);
}
