#include "api/path.h"

#include <fmt/format.h>

#include "api/auth.h"
#include "engine/db.h"

namespace platform::api {

std::string not_found_hint(std::string_view kind) {
  return fmt::format("List what exists with `platform {} list`.", kind);
}

// Resolves every "{kind}" path parameter from the org down, checking the caller may see the org.
// Another org's resource is "not found", never "forbidden".
std::vector<Resolved> resolve_path(Context& ctx, Principal& principal, const Params& params) {
  std::vector<Resolved> chain;
  auto org = params.find("org");
  if (org == params.end()) return chain;
  auto org_not_found = [&] {
    return PlatformError(ErrorCode::not_found, fmt::format("org \"{}\" not found", org->second.substr(0, 100)),
                         not_found_hint("org"));
  };
  try {
    chain.push_back(ctx.pool.read([&](pqxx::transaction_base& tx) { return resolve(tx, *kind_by_name("org"), "", org->second); }));
  } catch (const PlatformError& e) {
    if (e.error().code == ErrorCode::not_found) throw org_not_found();
    throw;
  }
  // Checked before looking further, so nothing about another org's contents leaks.
  if (!ctx.auth.can_access_org(principal, chain.front().id)) throw org_not_found();
  ctx.pool.read([&](pqxx::transaction_base& tx) {
    for (auto kind : kChain.subspan(1)) {
      auto it = params.find(std::string(kind));
      if (it == params.end()) break;
      chain.push_back(resolve(tx, *kind_by_name(kind), chain.back().id, it->second));
    }
    return 0;
  });
  return chain;
}

std::string env_flags(const std::vector<Resolved>& chain) {
  return "--project " + chain.at(1).name + " --app " + chain.at(2).name + " --env " + chain.at(3).name;
}

std::string path_of(const std::vector<Resolved>& chain) {
  std::string p;
  for (const auto& r : chain) p += (p.empty() ? "" : "/") + r.kind + "/" + r.name;
  return p;
}

}  // namespace platform::api
