// The health tracker: grace, threshold, recovery.
#include <gtest/gtest.h>

#include "agent/health.h"

using namespace platform;
using namespace std::chrono_literals;

TEST(Health, FailuresCountAfterTheGracePeriodUpToTheThreshold) {
  manifest::HealthCheck c;
  c.type = "http";
  c.grace_ms = 30000;
  c.threshold = 3;
  agent::HealthTracker t(c);
  agent::ProbeResult bad{false, "HTTP 503 from /healthz", 5ms};
  EXPECT_EQ(t.record(bad, 1s), "starting");  // within grace: expected while it starts
  EXPECT_EQ(t.consecutive_failures(), 0);
  EXPECT_EQ(t.record(bad, 31s), "starting");
  EXPECT_EQ(t.record(bad, 41s), "starting");
  EXPECT_EQ(t.record(bad, 51s), "unhealthy");
  EXPECT_EQ(t.last_error(), "HTTP 503 from /healthz");
  EXPECT_EQ(t.record({true, "", 1ms}, 61s), "healthy");
  EXPECT_EQ(t.consecutive_failures(), 0);
  // Once healthy, a failure counts even within what was the grace period.
  agent::HealthTracker fast(c);
  EXPECT_EQ(fast.record({true, "", 1ms}, 1s), "healthy");
  fast.record(bad, 2s);
  fast.record(bad, 3s);
  EXPECT_EQ(fast.record(bad, 4s), "unhealthy");
}

TEST(Health, ExecChecksAreNotNetworkProbes) {
  manifest::HealthCheck c;
  c.type = "exec";
  auto r = agent::probe(c, {1, "127.0.0.1"});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("through the instance's runtime"), std::string::npos);
}
