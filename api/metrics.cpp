#include "api/metrics.h"

#include <fmt/format.h>

#include "engine/version.h"

namespace platform::api {

std::string Metrics::render() const {
  std::string out;
  auto counter = [&](const char* name, const char* help, std::uint64_t v) {
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n{0} {2}\n", name, help, v);
  };
  out += fmt::format("# HELP platform_build_info The build that serves, as labels (value always 1).\n"
                     "# TYPE platform_build_info gauge\nplatform_build_info{{version=\"{}\",commit=\"{}\"}} 1\n",
                     build_info().version, build_info().commit);
  counter("platform_http_requests_total", "HTTP requests received.", requests_total);
  out += "# HELP platform_http_responses_total HTTP responses by status class.\n"
         "# TYPE platform_http_responses_total counter\n";
  for (int c = 1; c <= 5; ++c)
    out += fmt::format("platform_http_responses_total{{class=\"{}xx\"}} {}\n", c, responses_by_class[c].load());
  counter("platform_http_connections_total", "TCP connections accepted.", connections_total);
  counter("platform_http_connections_refused_total", "Connections refused by the connection limit.",
          connections_refused);
  counter("platform_mutations_total", "Mutating requests handled.", mutations_total);
  counter("platform_watch_requests_total", "Event watch (long poll) requests.", watch_requests_total);
  out += fmt::format("# HELP platform_http_connections_active Open connections.\n"
                     "# TYPE platform_http_connections_active gauge\nplatform_http_connections_active {}\n",
                     connections_active.load());
  for (const auto& g : gauges_)
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", g.name, g.help, g.read());
  return out;
}

}  // namespace platform::api
