#include "engine/version.h"

#include "engine/build_info.inc"  // generated in the build folder by engine/build_info.cmake

namespace platform {

const BuildInfo& build_info() {
  static const BuildInfo info{PLATFORM_BUILD_VERSION, PLATFORM_BUILD_COMMIT};
  return info;
}

std::string version_line() { return build_info().version + " (commit " + build_info().commit + ")"; }

std::string user_agent(const std::string& program) {
  return program + "/" + build_info().version + " (" + build_info().commit + ")";
}

std::string release_line(const std::string& version) {
  auto first = version.find('.');
  if (first == std::string::npos) return version;
  auto second = version.find('.', first + 1);
  return second == std::string::npos ? version : version.substr(0, second);
}

}  // namespace platform
