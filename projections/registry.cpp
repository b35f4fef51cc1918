#include "projections/projections_impl.h"

namespace platform::projections {

std::vector<std::unique_ptr<Projection>> all() {
  std::vector<std::unique_ptr<Projection>> v;
  v.push_back(make_resources_projection());
  v.push_back(make_operations_projection());
  return v;
}

std::unique_ptr<Projection> by_name(const std::string& name) {
  for (auto& p : all())
    if (p->name() == name) return std::move(p);
  return nullptr;
}

std::vector<std::string> names() {
  std::vector<std::string> out;
  for (const auto& p : all()) out.push_back(p->name());
  return out;
}

}  // namespace platform::projections
