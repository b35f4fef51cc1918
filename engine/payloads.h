#pragma once
// The payloads of the control plane's own events (stored as JSON in events.data). Every field a
// reader needs is required when decoding; optional ones have the defaults written here.
#include <string>

#include "engine/json.h"

namespace platform::events {

// OrgCreated, ProjectCreated, AppCreated, EnvCreated.
struct ResourceCreated {
  static constexpr int kSchemaVersion = 1;
  std::string name;
  std::string description;
  Json labels = Json::object();
  Json to_json() const;
  static ResourceCreated from_json(const Json& data, int version);
};

// OrgDeleted, ProjectDeleted, AppDeleted, EnvDeleted.
struct ResourceDeleted {
  static constexpr int kSchemaVersion = 1;
  std::string name;
  Json to_json() const;
  static ResourceDeleted from_json(const Json& data, int version);
};

struct UserCreated {
  static constexpr int kSchemaVersion = 1;
  std::string name;
  Json to_json() const;
  static UserCreated from_json(const Json& data, int version);
};

struct TokenIssued {
  static constexpr int kSchemaVersion = 2;  // 2: expires_at
  std::string user_id;
  std::string org_id;  // empty: the token is not restricted to one org
  std::string description;
  std::string expires_at;  // RFC 3339; empty: never (and every version 1 event)
  Json to_json() const;
  static TokenIssued from_json(const Json& data, int version);
};

struct TokenRevoked {
  static constexpr int kSchemaVersion = 1;
  std::string user_id;     // whose token it was
  std::string revoked_by;  // the user who revoked it ("operator" from platformd token revoke)
  Json to_json() const;
  static TokenRevoked from_json(const Json& data, int version);
};

}  // namespace platform::events
