// read_model.operations: one row per operation, folded from the events that carry its operation_id.
#include "projections/projections_impl.h"

namespace platform::projections {
namespace {

class OperationsProjection final : public Projection {
 public:
  std::string name() const override { return "operations"; }
  std::vector<std::string> tables() const override { return {"read_model.operations"}; }

  void apply(pqxx::transaction_base& tx, const events::Recorded& e) override {
    const auto& m = e.metadata;
    const std::string op = m.value("operation_id", "");
    if (op.empty()) return;
    tx.exec_params(
        "INSERT INTO read_model.operations (id, org_id, kind, actor, resource_id, request_id, started_at,"
        " finished_at, event_count, first_position, last_tx_id, last_position)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::timestamptz, $7::timestamptz, 1, $8, $9::text::xid8, $8)"
        " ON CONFLICT (id) DO UPDATE SET finished_at = EXCLUDED.finished_at,"
        "   event_count = read_model.operations.event_count + 1,"
        "   last_tx_id = EXCLUDED.last_tx_id, last_position = EXCLUDED.last_position",
        op, m.value("org_id", ""), m.value("operation_kind", ""), m.value("actor", ""), m.value("resource_id", ""),
        m.value("request_id", ""), e.recorded_at, e.cursor.pos, std::to_string(e.cursor.tx));
  }
};

}  // namespace

std::unique_ptr<Projection> make_operations_projection() { return std::make_unique<OperationsProjection>(); }

}  // namespace platform::projections
