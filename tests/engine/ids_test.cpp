#include "engine/ids.h"

#include <gtest/gtest.h>

#include <set>

#include "engine/duration.h"
#include "engine/error.h"
#include "engine/event_store.h"

using namespace platform;

TEST(Ids, ShapeAndRoundTrip) {
  auto id = new_id("app");
  ASSERT_EQ(id.size(), 4u + 26u);
  std::string prefix;
  EXPECT_TRUE(looks_like_id(id, &prefix));
  EXPECT_EQ(prefix, "app");
  auto u = new_uuid_v7();
  EXPECT_EQ(u[6] >> 4, 7);
  auto back = base32_decode(base32_encode(u));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, u);
}

TEST(Ids, SortByCreationTime) {
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    ids.push_back(new_id("op"));
    if (i % 10 == 0) usleep(1500);
  }
  for (std::size_t i = 10; i < ids.size(); i += 10) EXPECT_LT(ids[i - 10], ids[i]);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size());
}

TEST(Ids, RejectsLookalikes) {
  EXPECT_FALSE(looks_like_id("web"));
  EXPECT_FALSE(looks_like_id("app_short"));
  EXPECT_FALSE(looks_like_id("APP_01m8030nptf3dayqqdjt98tdp6"));
  EXPECT_FALSE(looks_like_id("app_01m8030nptf3dayqqdjt98tdpu"));  // 'u' is not Crockford base32
  EXPECT_FALSE(looks_like_id("app_91m8030nptf3dayqqdjt98tdp6"));  // overflows 128 bits
  EXPECT_EQ(id_from_name("idem", "k"), id_from_name("idem", "k"));
  EXPECT_NE(id_from_name("idem", "k"), id_from_name("idem", "l"));
}

TEST(Duration, Parses) {
  EXPECT_EQ(parse_duration("250ms")->count(), 250);
  EXPECT_EQ(parse_duration("30s")->count(), 30000);
  EXPECT_EQ(parse_duration("1h30m")->count(), 5400000);
  EXPECT_EQ(parse_duration("15")->count(), 15000);
  EXPECT_FALSE(parse_duration(""));
  EXPECT_FALSE(parse_duration("5x"));
  EXPECT_FALSE(parse_duration("s"));
  EXPECT_FALSE(parse_duration("10s5"));
}

TEST(UtcTime, AcceptsOnlyRealMomentsInTheAgentsFormat) {
  EXPECT_TRUE(is_utc_time("2026-11-22T06:31:55Z"));
  EXPECT_TRUE(is_utc_time("2026-11-22T06:31:55.830339Z"));
  EXPECT_TRUE(is_utc_time("2028-02-29T23:59:59.1Z"));
  EXPECT_FALSE(is_utc_time("2026-02-29T00:00:00Z"));  // not a leap year
  EXPECT_FALSE(is_utc_time("2026-04-31T00:00:00Z"));
  EXPECT_FALSE(is_utc_time("2026-13-01T00:00:00Z"));
  EXPECT_FALSE(is_utc_time("2026-11-22T24:00:00Z"));
  EXPECT_FALSE(is_utc_time("2026-11-22T06:31:55.Z"));
  EXPECT_FALSE(is_utc_time("2026-11-22T06:31:55+01:00"));
  EXPECT_FALSE(is_utc_time("2026-11-22 06:31:55Z"));
  EXPECT_FALSE(is_utc_time("2026-11-22T06:3a:55Z"));
  EXPECT_FALSE(is_utc_time("1700000000"));
}

TEST(Errors, ExitCodesMatchTheDocumentedTable) {
  EXPECT_EQ(exit_code(ErrorCode::invalid_request), 2);
  EXPECT_EQ(exit_code(ErrorCode::timed_out), 4);
  EXPECT_EQ(exit_code(ErrorCode::capacity), 5);
  EXPECT_EQ(exit_code(ErrorCode::version_conflict), 6);
  EXPECT_EQ(exit_code(ErrorCode::not_found), 7);
  EXPECT_EQ(exit_code(ErrorCode::unauthenticated), 8);
  EXPECT_EQ(exit_code(ErrorCode::not_supported), 10);
  EXPECT_EQ(exit_code(ErrorCode::interrupted), 130);
  EXPECT_EQ(http_status(ErrorCode::version_conflict), 409);
  EXPECT_EQ(http_status(ErrorCode::not_found), 404);
  EXPECT_EQ(error_code_from_string("name_taken"), ErrorCode::name_taken);
  EXPECT_EQ(error_code_from_string("nonsense"), ErrorCode::internal);
}

TEST(Cursor, EncodesAndOrders) {
  events::Cursor a{10, 5}, b{10, 6}, c{11, 1};
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);  // a later transaction sorts after, whatever its position
  EXPECT_EQ(*events::Cursor::decode(c.encode()), c);
  EXPECT_FALSE(events::Cursor::decode("1"));
  EXPECT_FALSE(events::Cursor::decode("a.b"));
  EXPECT_FALSE(events::Cursor::decode("1.-2"));
  EXPECT_FALSE(events::Cursor::decode(".5"));
}

TEST(Filter, MatchesTypePrefixAndResource) {
  events::Recorded e;
  e.type = "AppCreated";
  e.metadata = {{"org_id", "org_1"}, {"resource_id", "app_1"}, {"operation_id", "op_1"}};
  events::Filter f;
  EXPECT_TRUE(f.matches(e));
  f.type = "App*";
  EXPECT_TRUE(f.matches(e));
  f.type = "AppDeleted";
  EXPECT_FALSE(f.matches(e));
  f = {};
  f.resource_id = "app_1";
  EXPECT_TRUE(f.matches(e));
  f.org_id = "org_2";
  EXPECT_FALSE(f.matches(e));
}
