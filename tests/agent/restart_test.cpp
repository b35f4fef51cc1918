// Restart decisions: policies, exponential backoff with a cap, giving up after max_attempts, and a
// long run resetting the count.
#include <gtest/gtest.h>

#include "agent/restart.h"

using namespace platform;
using namespace std::chrono_literals;

namespace {
agent::ExitStatus exited(int code) { return {code, 0, false}; }
manifest::RestartPolicy policy(const std::string& name, int max_attempts = 10) {
  manifest::RestartPolicy p;
  p.policy = name;
  p.max_attempts = max_attempts;
  p.backoff_ms = 1000;
  p.max_backoff_ms = 300000;
  return p;
}
}  // namespace

TEST(Restart, BackoffDoublesUpToTheCap) {
  std::vector<std::int64_t> delays;
  for (int r = 0; r < 12; ++r) delays.push_back(agent::decide_restart(policy("always", 0), exited(1), r, 1s, false).delay.count());
  EXPECT_EQ(delays, (std::vector<std::int64_t>{1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000,
                                               300000, 300000}));
  EXPECT_EQ(agent::decide_restart(policy("always", 0), exited(1), 1000000, 1s, false).delay, 300000ms);
}

TEST(Restart, PoliciesDecideWhatIsRestarted) {
  auto always = agent::decide_restart(policy("always"), exited(0), 0, 1s, false);
  EXPECT_TRUE(always.restart);
  auto done = agent::decide_restart(policy("on-failure"), exited(0), 0, 1s, false);
  EXPECT_FALSE(done.restart);
  EXPECT_FALSE(done.failed);
  auto crashed = agent::decide_restart(policy("on-failure"), exited(3), 0, 1s, false);
  EXPECT_TRUE(crashed.restart);
  EXPECT_EQ(crashed.reason, "exited with status 3; restarting in 1.0 s (attempt 1 of 10)");
  auto never = agent::decide_restart(policy("never"), {-1, 9, true}, 0, 1s, false);
  EXPECT_FALSE(never.restart);
  EXPECT_TRUE(never.failed);
  EXPECT_NE(never.reason.find("out of memory"), std::string::npos);
  auto stopped = agent::decide_restart(policy("always"), {-1, 15, false}, 0, 1s, true);
  EXPECT_FALSE(stopped.restart);
  EXPECT_FALSE(stopped.failed);
  EXPECT_EQ(stopped.reason.rfind("stopped by the platform", 0), 0u);
}

TEST(Restart, GivesUpAfterMaxAttemptsUnlessTheRunWasLong) {
  auto last = agent::decide_restart(policy("always", 3), exited(3), 2, 1s, false);
  EXPECT_TRUE(last.restart);
  auto gave_up = agent::decide_restart(policy("always", 3), exited(3), 3, 1s, false);
  EXPECT_FALSE(gave_up.restart);
  EXPECT_TRUE(gave_up.failed);
  EXPECT_EQ(gave_up.reason, "exited with status 3; gave up after 3 restarts (restart.max_attempts = 3)");
  auto recovered = agent::decide_restart(policy("always", 3), exited(3), 3, agent::kBackoffReset, false);
  EXPECT_TRUE(recovered.restart);
  EXPECT_EQ(recovered.delay, 1000ms);
}
