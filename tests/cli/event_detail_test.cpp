// The DETAIL column of `platform events`: what each kind of event says in a few words.
#include "cli/event_detail.h"

#include <gtest/gtest.h>

namespace platform::cli {
namespace {

Json event(const std::string& type, Json data) { return {{"type", type}, {"data", std::move(data)}}; }

TEST(EventDetail, ReleasesSayWhichAndWhy) {
  EXPECT_EQ(event_detail(event("EnvReleaseSet", {{"number", 4}, {"reason", "rollback"}})), "v4 (rollback)");
  EXPECT_EQ(event_detail(event("EnvReleaseSet", {{"number", 5}, {"reason", "deploy"}})), "v5 (deploy)");
  EXPECT_EQ(event_detail(event("ReleaseCreated", {{"number", 5}, {"image", {{"ref", "r.example/app:v5"}}}})),
            "v5: r.example/app:v5");
}

TEST(EventDetail, VersionsNameTheKeysNeverTheValues) {
  auto d = event_detail(event("ConfigVersionCreated",
                              {{"version", 3},
                               {"set", {"A", "B"}},
                               {"unset", {"C"}},
                               {"values", {{"A", {{"value", "hunter2"}}}}}}));
  EXPECT_EQ(d, "v3: set A, B; unset C");
  EXPECT_EQ(event_detail(event("SecretsVersionCreated", {{"version", 2}, {"set", Json::array()}, {"unset", {"K"}}})),
            "v2: unset K");
}

TEST(EventDetail, ScaleAddressesAndEndpoints) {
  EXPECT_EQ(event_detail(event("ProcessScaled", {{"changes", {{"web", {{"count", 3}}}, {"worker", {{"memory_mib", 512}}}}}})),
            "web=3, worker 512 MiB");
  EXPECT_EQ(event_detail(event("IpAllocated", {{"family", "ipv4"}, {"address", "127.0.77.1"}, {"price_cents_month", 200}})),
            "ipv4 127.0.77.1 ($2.00/month)");
  EXPECT_EQ(event_detail(event("IpReleased", {{"family", "ipv6"}, {"address", "fd70::1"}})), "ipv6 fd70::1");
  EXPECT_EQ(event_detail(event("EndpointCreated", {{"name", "db"},
                                                    {"port", 5432},
                                                    {"process", "web"},
                                                    {"internal_port", 5433},
                                                    {"proxy_protocol", "v2"}})),
            "db: tcp 5432 → web:5433, PROXY v2");
  EXPECT_EQ(event_detail(event("EndpointDeleted", {{"name", "db"}, {"port", 5432}})), "db: tcp 5432");
}

TEST(EventDetail, InstancesSayWhy) {
  EXPECT_EQ(event_detail(event("InstancePlaced", {{"host_name", "h1"}, {"reason", "release v2 runs 2 web instances"}})),
            "on host h1: release v2 runs 2 web instances");
  EXPECT_EQ(event_detail(event("InstanceExited", {{"reason", "exited with status 3"}})), "exited with status 3");
}

TEST(EventDetail, TokensSayWhatForAndUntilWhen) {
  EXPECT_EQ(event_detail(event("TokenIssued", {{"description", "CI deploys"}, {"expires_at", "2027-01-06T17:00:20.992703Z"}})),
            "CI deploys, expires 2027-01-06T17:00:20Z");
  EXPECT_EQ(event_detail(event("TokenIssued", {{"description", "admin"}})), "admin, never expires");
  EXPECT_EQ(event_detail(event("TokenRevoked", {{"revoked_by", "operator"}})), "by an operator (platformd token revoke)");
  EXPECT_EQ(event_detail(event("TokenRevoked", {{"revoked_by", "usr_1"}})), "");
}

TEST(EventDetail, NothingToAddIsEmptyAndOddDataIsNoCrash) {
  EXPECT_EQ(event_detail(event("ProjectCreated", {{"name", "shop"}, {"description", ""}})), "");
  EXPECT_EQ(event_detail(event("SomethingNew", {{"reason", 7}})), "");
  EXPECT_EQ(event_detail(Json{{"type", "EnvReleaseSet"}, {"data", "not an object"}}), "v0");
  EXPECT_EQ(event_detail(event("ConfigVersionCreated", {{"set", "A"}})), "v0");
  EXPECT_EQ(event_detail(Json::object()), "");
  EXPECT_EQ(event_detail(event("EnvReleaseSet", {{"number", "four"}})), "v0");
  EXPECT_EQ(event_detail(event("ProcessScaled", {{"changes", {{"web", 3}}}})), "");
}

}  // namespace
}  // namespace platform::cli
