// Rollout planning: start new first, stop old only once new ones are healthy in their place, scale down
// the least useful first, and never take a process with count >= 2 to zero to make room.
#include <gtest/gtest.h>

#include "reconcilers/rollout.h"

using namespace platform::reconcilers;

namespace {

InstanceView inst(const std::string& name, const std::string& release, const std::string& state = "running",
                  const std::string& health = "healthy", bool run = true) {
  const auto dash = name.rfind('-');
  return {"ins_" + name, name, name.substr(0, dash), release, std::stoi(name.substr(dash + 1)), run, state, health};
}

std::vector<std::string> stopped(const RolloutPlan& p) {
  std::vector<std::string> out;
  for (const auto& s : p.stop) out.push_back(s.name);
  return out;
}

}  // namespace

TEST(Rollout, FirstDeployPlacesEveryInstance) {
  auto p = plan_rollout("r1", "v1", {{"web", 2}, {"worker", 1}}, {});
  EXPECT_EQ(p.place["web"], 2);
  EXPECT_EQ(p.place["worker"], 1);
  EXPECT_TRUE(p.stop.empty());
}

TEST(Rollout, ConvergedMeansNothingToDo) {
  auto p = plan_rollout("r1", "v1", {{"web", 2}}, {inst("web-1", "r1"), inst("web-2", "r1")});
  EXPECT_TRUE(p.place.empty());
  EXPECT_TRUE(p.stop.empty());
}

TEST(Rollout, NewReleaseStartsNewBeforeStoppingOld) {
  std::vector<InstanceView> now = {inst("web-1", "r1"), inst("web-2", "r1")};
  auto p = plan_rollout("r2", "v2", {{"web", 2}}, now);
  EXPECT_EQ(p.place["web"], 2);
  EXPECT_TRUE(p.stop.empty()) << "no old instance stops before a new one is healthy";

  // One new one healthy, one still starting: exactly one old one goes.
  now.push_back(inst("web-3", "r2"));
  now.push_back(inst("web-4", "r2", "running", "starting"));
  p = plan_rollout("r2", "v2", {{"web", 2}}, now);
  EXPECT_TRUE(p.place.empty());
  ASSERT_EQ(stopped(p), std::vector<std::string>{"web-1"});
  EXPECT_EQ(p.stop[0].reason, "replaced by release v2");

  // Both new ones healthy: the other old one goes too.
  now[3].health = "healthy";
  now[0].desired_run = false;
  p = plan_rollout("r2", "v2", {{"web", 2}}, now);
  EXPECT_EQ(stopped(p), std::vector<std::string>{"web-2"});
}

TEST(Rollout, AFailingNewReleaseNeverTakesDownTheOldOne) {
  std::vector<InstanceView> now = {inst("web-1", "r1"), inst("web-2", "r1"), inst("web-3", "r2", "failed", "unknown"),
                                   inst("web-4", "r2", "restarting", "unknown")};
  auto p = plan_rollout("r2", "v2", {{"web", 2}}, now);
  EXPECT_TRUE(p.stop.empty());
  EXPECT_TRUE(p.place.empty()) << "failed instances count: no endless replacements";
}

TEST(Rollout, OldInstancesThatServeNothingStopAtOnce) {
  auto p = plan_rollout("r2", "v2", {{"web", 1}}, {inst("web-1", "r1", "restarting", "unknown")});
  EXPECT_EQ(p.place["web"], 1);
  EXPECT_EQ(stopped(p), std::vector<std::string>{"web-1"});
}

TEST(Rollout, ScaleDownStopsTheLeastUsefulFirst) {
  std::vector<InstanceView> now = {inst("web-1", "r1"), inst("web-2", "r1"), inst("web-3", "r1"),
                                   inst("web-4", "r1", "failed", "unknown"), inst("web-5", "r1", "running", "unhealthy")};
  auto p = plan_rollout("r1", "v1", {{"web", 2}}, now);
  EXPECT_EQ(stopped(p), (std::vector<std::string>{"web-4", "web-5", "web-3"}));
  EXPECT_EQ(p.stop[0].reason, "scaled web to 2");
}

TEST(Rollout, AProcessLeftOutOfTheReleaseStops) {
  auto p = plan_rollout("r2", "v2", {{"web", 1}}, {inst("web-1", "r2"), inst("worker-1", "r1")});
  ASSERT_EQ(stopped(p), std::vector<std::string>{"worker-1"});
  EXPECT_EQ(p.stop[0].reason, "process worker is not in release v2");
}

TEST(Rollout, InstancesBeingStoppedAreNotCounted) {
  auto p = plan_rollout("r1", "v1", {{"web", 2}}, {inst("web-1", "r1"), inst("web-2", "r1", "running", "healthy", false)});
  EXPECT_EQ(p.place["web"], 1);
  EXPECT_TRUE(p.stop.empty());
}

TEST(Rollout, MakeRoomStopsOneOldInstanceButNeverTheLastServingOneOfAPair) {
  // count 2, both old serving: one may go (the other still serves).
  std::vector<InstanceView> now = {inst("web-1", "r1"), inst("web-2", "r1")};
  auto r = make_room("r2", "v2", "web", 2, now);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_NE(r[0].reason.find("make room"), std::string::npos);
  // One stop already under way: wait for it.
  now[0].desired_run = false;
  EXPECT_TRUE(make_room("r2", "v2", "web", 2, now).empty());
  // The last old one serving, and nothing new serving yet: keep it.
  std::vector<InstanceView> last = {inst("web-2", "r1"), inst("web-3", "r2", "running", "starting")};
  EXPECT_TRUE(make_room("r2", "v2", "web", 2, last).empty());
  last[1].health = "healthy";
  EXPECT_EQ(make_room("r2", "v2", "web", 2, last).size(), 1u);
  // count 1 on a full host: the only way forward is to replace it.
  EXPECT_EQ(make_room("r2", "v2", "web", 1, {inst("web-1", "r1")}).size(), 1u);
  // Nothing old: nothing to stop.
  EXPECT_TRUE(make_room("r2", "v2", "web", 2, {inst("web-3", "r2")}).empty());
}

TEST(Rollout, AResizedInstanceIsReplacedLikeAnOldOne) {
  auto web1 = inst("web-1", "r1");
  web1.resized = true;
  auto p = plan_rollout("r1", "v1", {{"web", 1}}, {web1});
  EXPECT_EQ(p.place["web"], 1);
  EXPECT_TRUE(p.stop.empty()) << "it serves until its replacement is healthy";
  p = plan_rollout("r1", "v1", {{"web", 1}}, {web1, inst("web-2", "r1")});
  ASSERT_EQ(stopped(p), std::vector<std::string>{"web-1"});
  EXPECT_EQ(p.stop[0].reason, "resized: replaced by an instance of the new size");
}

// `platform restart`: instances placed before it are replaced one by one, like a deploy's, and the
// process never drops below its healthy count on the way.
TEST(Rollout, AnInstanceToRestartIsReplacedOnceItsReplacementIsHealthy) {
  auto web1 = inst("web-1", "r1"), web2 = inst("web-2", "r1");
  web1.restart = web2.restart = true;
  auto p = plan_rollout("r1", "v1", {{"web", 2}}, {web1, web2});
  EXPECT_EQ(p.place["web"], 2);
  EXPECT_TRUE(p.stop.empty()) << "both serve until their replacements are healthy";
  p = plan_rollout("r1", "v1", {{"web", 2}}, {web1, web2, inst("web-3", "r1"), inst("web-4", "r1", "running", "starting")});
  ASSERT_EQ(stopped(p), std::vector<std::string>{"web-1"});
  EXPECT_EQ(p.stop[0].reason, "restarted: replaced by a new instance (platform restart)");
}
