// Reading an env's logs by cursor against a real database: lines come in (transaction, id) order
// across pages, each once, also where transaction ids gain a digit (9 -> 10), which a text ordering
// would put first (a bug the microvm end-to-end test found).
#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include "api/logs.h"
#include "engine/db.h"
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

}  // namespace
}  // namespace platform
