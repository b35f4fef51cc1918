// Typed payloads: encode stamps the schema version; decode reads it back, refuses a newer schema and a
// payload missing what readers need, and names the event when it does.
#include <gtest/gtest.h>

#include "engine/error.h"
#include "engine/payloads.h"
#include "engine/typed_events.h"

using namespace platform;

namespace {
events::Recorded recorded(const events::NewEvent& n) {
  events::Recorded r;
  r.cursor = {42, 7};
  r.event_id = n.event_id;
  r.type = n.type;
  r.schema_version = n.schema_version;
  r.data = n.data;
  r.metadata = n.metadata;
  return r;
}
}  // namespace

TEST(TypedEvents, EncodeStampsTheVersionAndDecodeRoundTrips) {
  auto n = events::encode("AppCreated", events::ResourceCreated{"web", "the shop", {{"team", "core"}}}, {{"actor", "t"}});
  EXPECT_EQ(n.type, "AppCreated");
  EXPECT_EQ(n.schema_version, events::ResourceCreated::kSchemaVersion);
  EXPECT_EQ(n.event_id.size(), 36u);
  auto p = events::decode<events::ResourceCreated>(recorded(n));
  EXPECT_EQ(p.name, "web");
  EXPECT_EQ(p.description, "the shop");
  EXPECT_EQ(p.labels["team"], "core");
  auto t = events::decode<events::TokenIssued>(recorded(events::encode("TokenIssued", events::TokenIssued{"usr_1", "", "ci", ""}, {})));
  EXPECT_EQ(t.user_id, "usr_1");
  EXPECT_EQ(t.description, "ci");
  EXPECT_EQ(t.expires_at, "");
  // Version 2 added expires_at; a version 1 event (none) still reads, as "never".
  auto v2 = recorded(events::encode("TokenIssued", events::TokenIssued{"usr_1", "", "ci", "2027-01-01T00:00:00.000000Z"}, {}));
  EXPECT_EQ(events::decode<events::TokenIssued>(v2).expires_at, "2027-01-01T00:00:00.000000Z");
  auto v1 = recorded(events::encode("TokenIssued", events::TokenIssued{"usr_1", "", "ci", ""}, {}));
  v1.schema_version = 1;
  EXPECT_EQ(events::decode<events::TokenIssued>(v1).expires_at, "");
  auto r = events::decode<events::TokenRevoked>(recorded(events::encode("TokenRevoked", events::TokenRevoked{"usr_1", "usr_2"}, {})));
  EXPECT_EQ(r.revoked_by, "usr_2");
}

TEST(TypedEvents, OptionalFieldsTakeTheirDefaults) {
  auto r = recorded(events::encode("OrgCreated", events::ResourceCreated{"acme", "", Json::object()}, {}));
  r.data = {{"name", "acme"}};
  auto p = events::decode<events::ResourceCreated>(r);
  EXPECT_EQ(p.description, "");
  EXPECT_TRUE(p.labels.is_object());
}

TEST(TypedEvents, ANewerSchemaIsRefusedWithTheEventNamed) {
  auto r = recorded(events::encode("AppCreated", events::ResourceCreated{"web", "", Json::object()}, {}));
  r.schema_version = events::ResourceCreated::kSchemaVersion + 1;
  try {
    events::decode<events::ResourceCreated>(r);
    FAIL() << "a newer schema must not be folded with an older one";
  } catch (const PlatformError& e) {
    EXPECT_NE(e.error().message.find("AppCreated"), std::string::npos) << e.error().message;
    EXPECT_NE(e.error().message.find("42.7"), std::string::npos) << e.error().message;
    EXPECT_NE(e.error().hint.find("upgrade"), std::string::npos) << e.error().hint;
  }
  r.schema_version = 0;
  EXPECT_THROW(events::decode<events::ResourceCreated>(r), PlatformError);
}

TEST(TypedEvents, MissingOrMistypedFieldsAreRefused) {
  auto r = recorded(events::encode("AppCreated", events::ResourceCreated{"web", "", Json::object()}, {}));
  r.data = {{"description", "no name"}};
  EXPECT_THROW(events::decode<events::ResourceCreated>(r), PlatformError);
  r.data = {{"name", 42}};
  EXPECT_THROW(events::decode<events::ResourceCreated>(r), PlatformError);
  r.data = {{"name", "web"}, {"labels", "not an object"}};
  EXPECT_THROW(events::decode<events::ResourceCreated>(r), PlatformError);
}
