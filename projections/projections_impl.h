#pragma once
// Factories of the built-in projections; only registry.cpp and the projection files include this.
#include "projections/projection.h"

namespace platform::projections {
std::unique_ptr<Projection> make_resources_projection();
std::unique_ptr<Projection> make_operations_projection();
}  // namespace platform::projections
