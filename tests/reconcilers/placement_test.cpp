// Placement: memory never oversubscribed, CPU up to the ratio, spread, pinning, and reasons in words.
#include <gtest/gtest.h>

#include "reconcilers/placement.h"

using platform::reconcilers::HostCapacity;
using platform::reconcilers::Placer;
using platform::reconcilers::PlacementRequest;

namespace {

HostCapacity host(const std::string& name, double cpus, std::int64_t mib, bool up = true) {
  return {"host_" + name, name, up, cpus, mib, 0, 0};
}

}  // namespace

TEST(Placement, MemoryIsAHardCap) {
  Placer p({host("h1", 8, 1024)});
  PlacementRequest r{"env/web", 0.1, 512, ""};
  EXPECT_EQ(p.place(r).host_id, "host_h1");
  EXPECT_EQ(p.place(r).host_id, "host_h1");
  auto third = p.place(r);
  EXPECT_FALSE(third.host_id);
  EXPECT_EQ(third.reason, "needs 512 MiB and 0.1 CPU; h1 has 0 MiB free");
  EXPECT_EQ(p.hosts()[0].memory_allocated, 1024);
}

TEST(Placement, CpuMayBeOversubscribedUpToTheRatio) {
  Placer p({host("h1", 1, 100000)}, 2.0);
  PlacementRequest r{"env/web", 0.5, 10, ""};
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(p.place(r).host_id) << i;
  auto fifth = p.place(r);
  EXPECT_FALSE(fifth.host_id);
  EXPECT_NE(fifth.reason.find("h1 has 0 of 2 CPU left (CPU may be 2x oversubscribed)"), std::string::npos)
      << fifth.reason;
}

TEST(Placement, AProcessSpreadsAcrossHostsThenFillsTheEmptiest) {
  Placer p({host("a", 8, 4096), host("b", 8, 8192), host("c", 8, 2048)});
  PlacementRequest web{"env/web", 0.25, 256, ""};
  std::map<std::string, int> where;
  for (int i = 0; i < 3; ++i) ++where[*p.place(web).host_id];
  EXPECT_EQ(where, (std::map<std::string, int>{{"host_a", 1}, {"host_b", 1}, {"host_c", 1}}));
  EXPECT_EQ(p.place(web).host_id, "host_b");  // a tie on spread: the most free memory
  // Another process spreads on its own.
  PlacementRequest worker{"env/worker", 0.25, 256, ""};
  EXPECT_EQ(p.place(worker).host_id, "host_b");
  EXPECT_EQ(p.place(worker).host_id, "host_a");
}

TEST(Placement, UnschedulableSaysWhyHostByHost) {
  Placer p({host("h1", 4, 512), host("h2", 4, 65536, false)});
  auto r = p.place({"env/web", 0.5, 2048, ""});
  EXPECT_FALSE(r.host_id);
  EXPECT_EQ(r.reason, "needs 2048 MiB and 0.5 CPU; h1 has 512 MiB free; h2 is down");
  Placer none({});
  EXPECT_NE(none.place({"env/web", 0.5, 1, ""}).reason.find("no host is enrolled"), std::string::npos);
}

TEST(Placement, APinnedInstanceGoesToItsVolumesHostOrNowhere) {
  Placer p({host("a", 8, 4096), host("b", 8, 512)});
  EXPECT_EQ(p.place({"env/db", 1, 256, "host_b"}).host_id, "host_b");
  auto full = p.place({"env/db", 1, 1024, "host_b"});
  EXPECT_FALSE(full.host_id);
  EXPECT_EQ(full.reason, "needs 1024 MiB and 1 CPU; it must run on b (its volume is there); b has 256 MiB free");
  EXPECT_NE(p.place({"env/db", 1, 1, "host_gone"}).reason.find("is gone"), std::string::npos);
}

TEST(Placement, ReleaseReturnsCapacityAndPlacementIsDeterministic) {
  std::vector<HostCapacity> hosts;
  for (int i = 0; i < 20; ++i) hosts.push_back(host("h" + std::to_string(i), 4 + i % 3, 2048 + 512 * (i % 4)));
  Placer a(hosts), b(hosts);
  for (int i = 0; i < 200; ++i) {
    PlacementRequest r{"g" + std::to_string(i % 7), 0.25 * (1 + i % 3), 128 * (1 + i % 5), ""};
    EXPECT_EQ(a.place(r).host_id, b.place(r).host_id) << i;
  }
  Placer p({host("h", 2, 1000)});
  PlacementRequest r{"env/web", 1, 1000, ""};
  ASSERT_TRUE(p.place(r).host_id);
  EXPECT_FALSE(p.place(r).host_id);
  p.release("host_h", r);
  EXPECT_TRUE(p.place(r).host_id);
}

TEST(Placement, MakingRoomIsOnlyWorthItWhenTheRequestThenFits) {
  Placer placer({{"h1", "h1", true, 2, 1200, 0, 0}});  // 176 MiB free once two small ones run
  const PlacementRequest small{"e/web", 0.5, 512, ""}, big{"e/web", 0.5, 640, ""}, huge{"e/web", 0.5, 4096, ""};
  placer.record("h1", small);
  placer.record("h1", small);
  EXPECT_FALSE(placer.place(big).host_id);
  EXPECT_TRUE(placer.would_fit_after("h1", small, big));
  EXPECT_FALSE(placer.would_fit_after("h1", small, huge));
  EXPECT_FALSE(placer.would_fit_after("nope", small, big));
}

TEST(Placement, AMicroVmHostCountsEachInstancesVmOverheadAsMemory) {
  auto h = host("vm", 8, 1024);
  h.instance_overhead_mib = 96;
  Placer p({h});
  PlacementRequest r{"env/web", 0.1, 256, ""};
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(p.place(r).host_id) << i;  // 2 x (256 + 96) = 704 of 1024
  auto third = p.place(r);
  EXPECT_FALSE(third.host_id) << "3 x 352 MiB would oversubscribe the host's memory";
  EXPECT_EQ(third.reason, "needs 256 MiB and 0.1 CPU; vm has 320 MiB free (an instance there takes 96 MiB more for "
                          "its microVM)");
  EXPECT_TRUE(p.would_fit_after("host_vm", r, r));
  p.release("host_vm", r);
  EXPECT_EQ(p.hosts()[0].memory_allocated, 352);
}
