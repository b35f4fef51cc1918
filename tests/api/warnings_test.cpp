// The warnings the API sends with an answer (api/warnings.h) and how the client reads them back.
#include "api/warnings.h"

#include <gtest/gtest.h>

#include "api/client.h"
#include "engine/version.h"

using namespace platform;
using namespace std::chrono;

namespace {
api::Request from(const std::string& user_agent) {
  api::Request r;
  if (!user_agent.empty()) r.headers["user-agent"] = user_agent;
  return r;
}

api::Principal expiring_at(std::int64_t unix_seconds) {
  api::Principal p;
  p.token_id = "tok_1";
  p.token_expires_unix = unix_seconds;
  p.token_expires_at = "2030-01-01T00:00:00Z";
  return p;
}
}  // namespace

TEST(Warnings, ATokenIsWarnedAboutInItsLastWeekInTheUnitThatReadsBest) {
  const auto now = system_clock::time_point(seconds(1'000'000'000));
  const std::int64_t t = 1'000'000'000;
  EXPECT_TRUE(api::request_warnings(api::Principal{}, from(""), now).empty());  // never expires
  EXPECT_TRUE(api::request_warnings(expiring_at(t + 8 * 86400), from(""), now).empty());
  EXPECT_TRUE(api::request_warnings(expiring_at(t - 5), from(""), now).empty());  // expired: refused, not warned
  auto w = api::request_warnings(expiring_at(t + 6 * 86400 + 100), from(""), now);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0], "token tok_1 expires in 6 days (at 2030-01-01T00:00:00Z): make its successor with `platform token "
                  "create` and switch to it before then");
  EXPECT_NE(api::request_warnings(expiring_at(t + 30 * 3600), from(""), now)[0].find("in 30 hours"), std::string::npos);
  EXPECT_NE(api::request_warnings(expiring_at(t + 59 * 60 + 30), from(""), now)[0].find("in 59 minutes"), std::string::npos);
  EXPECT_NE(api::request_warnings(expiring_at(t + 20), from(""), now)[0].find("in 1 minute ("), std::string::npos);
}

TEST(Warnings, ACliOfAnotherReleaseLineIsWarnedOthersAreNot) {
  const api::Principal p;
  EXPECT_TRUE(api::request_warnings(p, from(user_agent("platform-cli")), system_clock::now()).empty());
  EXPECT_TRUE(api::request_warnings(p, from("curl/7.88.1"), system_clock::now()).empty());
  EXPECT_TRUE(api::request_warnings(p, from("platform-agent/99.0.0 (x)"), system_clock::now()).empty());
  auto w = api::request_warnings(p, from("platform-cli/99.1.0 (0123456789ab)"), system_clock::now());
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0], "this CLI is 99.1.0 and the server " + build_info().version + ": use a CLI of the server's release (" +
                      release_line(build_info().version) + ".x); `platform version` says more");
}

TEST(Warnings, TheHeaderRoundTripsAndTheClientReadsOthersForms) {
  const std::string text = "a \"quoted\" word, a back\\slash and a comma";
  EXPECT_EQ(api::parse_warning_header(api::warning_header(text)), std::vector<std::string>{text});
  EXPECT_EQ(api::warning_header("two\r\nlines"), "299 - \"two  lines\"");
  // Several in one value, one with a date (which holds a comma), as RFC 7234 allows.
  EXPECT_EQ(api::parse_warning_header("299 - \"one\", 299 - \"two\" \"Sat, 01 Jan 2000 00:00:00 GMT\", 199 x \"three\""),
            (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_TRUE(api::parse_warning_header("299 - no quotes").empty());
  EXPECT_EQ(api::parse_warning_header("299 - \"ok\", 299 - \"unterminated"), std::vector<std::string>{"ok"});
  EXPECT_TRUE(api::parse_warning_header("").empty());
}
