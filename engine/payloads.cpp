#include "engine/payloads.h"

#include "engine/error.h"
#include "engine/typed_events.h"

namespace platform::events {

void refuse_payload(const Recorded& e, int supported, const std::string& why) {
  throw PlatformError(ErrorCode::internal,
                      "cannot read event " + e.type + " (" + e.event_id + ", cursor " + e.cursor.encode() +
                          ", schema version " + std::to_string(e.schema_version) + "): " + why,
                      "This platformd reads " + e.type + " up to schema version " + std::to_string(supported) +
                          ". If a newer platformd wrote it, upgrade this one; the reader stops here rather than "
                          "skip the event.");
}

Json ResourceCreated::to_json() const { return {{"name", name}, {"description", description}, {"labels", labels}}; }

ResourceCreated ResourceCreated::from_json(const Json& d, int) {
  ResourceCreated p;
  p.name = d.at("name").get<std::string>();
  p.description = d.value("description", "");
  p.labels = d.value("labels", Json::object());
  if (!p.labels.is_object()) throw Json::type_error::create(302, "labels must be an object", &d);
  return p;
}

Json ResourceDeleted::to_json() const { return {{"name", name}}; }

ResourceDeleted ResourceDeleted::from_json(const Json& d, int) { return {d.at("name").get<std::string>()}; }

Json UserCreated::to_json() const { return {{"name", name}}; }

UserCreated UserCreated::from_json(const Json& d, int) { return {d.at("name").get<std::string>()}; }

Json TokenIssued::to_json() const {
  Json j = {{"user_id", user_id}, {"org_id", org_id}, {"description", description}};
  if (!expires_at.empty()) j["expires_at"] = expires_at;
  return j;
}

TokenIssued TokenIssued::from_json(const Json& d, int) {
  return {d.at("user_id").get<std::string>(), d.value("org_id", ""), d.value("description", ""), d.value("expires_at", "")};
}

Json TokenRevoked::to_json() const { return {{"user_id", user_id}, {"revoked_by", revoked_by}}; }

TokenRevoked TokenRevoked::from_json(const Json& d, int) {
  return {d.at("user_id").get<std::string>(), d.value("revoked_by", "")};
}

}  // namespace platform::events
