// read_model.resources: orgs, projects, apps and envs, folded from their Created/Deleted events.
#include "engine/payloads.h"
#include "engine/typed_events.h"
#include "projections/projections_impl.h"

namespace platform::projections {
namespace {

class ResourcesProjection final : public Projection {
 public:
  std::string name() const override { return "resources"; }
  std::vector<std::string> tables() const override { return {"read_model.resources"}; }

  void apply(pqxx::transaction_base& tx, const events::Recorded& e) override {
    if (e.category != "org" && e.category != "project" && e.category != "app" && e.category != "env") return;
    const auto& m = e.metadata;
    const std::string id = m.value("resource_id", "");
    const std::string actor = m.value("actor", "");
    const std::string op = m.value("operation_id", "");
    if (e.type.ends_with("Created")) {
      auto p = events::decode<events::ResourceCreated>(e);
      tx.exec_params(
          "INSERT INTO read_model.resources (id, kind, org_id, parent_id, name, description, labels, created_at,"
          " created_by, updated_at, version, last_operation)"
          " VALUES ($1, $2, $3, NULLIF($4, ''), $5, $6, $7::jsonb, $8::timestamptz, $9, $8::timestamptz, $10, $11)",
          id, e.category, m.value("org_id", ""), m.value("parent_id", ""), p.name, p.description, p.labels.dump(),
          e.recorded_at, actor,
          e.stream_version, op);
    } else if (e.type.ends_with("Deleted")) {
      events::decode<events::ResourceDeleted>(e);  // a payload this platformd cannot read stops the fold
      tx.exec_params(
          "UPDATE read_model.resources SET deleted_at = $2::timestamptz, deleted_by = $3, updated_at = $2::timestamptz,"
          " version = $4, last_operation = $5 WHERE id = $1",
          id, e.recorded_at, actor, e.stream_version, op);
    }
  }
};

}  // namespace

std::unique_ptr<Projection> make_resources_projection() { return std::make_unique<ResourcesProjection>(); }

}  // namespace platform::projections
