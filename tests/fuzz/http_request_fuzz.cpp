// Raw bytes from the network: Beast's request parser with the server's limits, then the conversion
// every handler sees (api/beast_request.cpp), then the strict body parser of a create request.
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstddef>
#include <cstdint>

#include "api/beast_request.h"
#include "api/body.h"
#include "api/server.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace http = boost::beast::http;
  const platform::api::ServerOptions limits;
  http::request_parser<http::string_body> parser;
  parser.body_limit(limits.body_limit);
  parser.header_limit(static_cast<std::uint32_t>(limits.header_limit));
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (!ec && !parser.is_done()) parser.put_eof(ec);
  if (ec || !parser.is_done()) return 0;
  try {
    auto req = platform::api::to_request(parser.get());
    (void)req.param("after");
    (void)req.header("authorization");
    platform::api::parse_body(req.body, {{"name", platform::api::FieldType::string, true},
                                         {"description", platform::api::FieldType::string},
                                         {"labels", platform::api::FieldType::object_of_strings}});
  } catch (const platform::PlatformError&) {
    // The documented answer to bad input; anything else escaping is a finding.
  }
  return 0;
}
