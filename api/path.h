#pragma once
// Resource paths in URLs: /v1/orgs/{org}/projects/{project}/apps/{app}/envs/{env}, resolved from the org
// down. Another org's resource is "not found", never "forbidden".
#include <array>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "api/context.h"
#include "api/http.h"
#include "api/resources.h"

namespace platform::api {

struct Principal;

inline constexpr std::array<std::string_view, 4> kChainArray = {"org", "project", "app", "env"};
inline constexpr std::span<const std::string_view> kChain{kChainArray};

// "List what exists with `platform KIND list`."
std::string not_found_hint(std::string_view kind);

// Every "{kind}" path parameter, org first; checks the caller may see the org before looking further.
std::vector<Resolved> resolve_path(Context& ctx, Principal& principal, const Params& params);

// "org/acme/project/shop/app/api"
std::string path_of(const std::vector<Resolved>& chain);

// "--project shop --app api --env prod" for an env's chain: what makes a suggested command exact, so it
// works when pasted whatever the CLI context selects.
std::string env_flags(const std::vector<Resolved>& chain);

}  // namespace platform::api
