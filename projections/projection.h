#pragma once
// A projection folds events into read-model tables (schema read_model). It is applied inside the
// runner's transaction, together with its checkpoint, so every event has exactly one effect.
#include <pqxx/pqxx>

#include <memory>
#include <string>
#include <vector>

#include "engine/event_store.h"

namespace platform::projections {

class Projection {
 public:
  virtual ~Projection() = default;
  virtual std::string name() const = 0;
  // Tables emptied by a rebuild.
  virtual std::vector<std::string> tables() const = 0;
  virtual void apply(pqxx::transaction_base& tx, const events::Recorded& e) = 0;
};

// Every projection platformd runs.
std::vector<std::unique_ptr<Projection>> all();
std::unique_ptr<Projection> by_name(const std::string& name);
std::vector<std::string> names();

}  // namespace platform::projections
