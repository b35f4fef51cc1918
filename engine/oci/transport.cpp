#include "engine/oci/transport.h"

#include <openssl/ssl.h>

#include <array>
#include <exception>
#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>

#include "engine/error.h"

namespace platform::oci {
namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
namespace ssl = asio::ssl;

std::string Url::str() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return (tls ? "https://" : "http://") + h + ":" + port + target;
}

Url parse_url(const std::string& text) {
  auto u = boost::urls::parse_absolute_uri(text);
  if (!u || (u->scheme() != "http" && u->scheme() != "https"))
    throw PlatformError(ErrorCode::unavailable, "the registry sent an unusable URL \"" + text.substr(0, 200) + "\"",
                        "Check the registry's configuration.");
  Url out;
  out.tls = u->scheme() == "https";
  out.host = std::string(u->encoded_host());
  if (out.host.size() > 2 && out.host.front() == '[') out.host = out.host.substr(1, out.host.size() - 2);
  out.port = u->has_port() ? std::string(u->port()) : (out.tls ? "443" : "80");
  out.target = std::string(u->encoded_path());
  if (out.target.empty()) out.target = "/";
  if (u->has_query()) out.target += "?" + std::string(u->encoded_query());
  return out;
}

namespace {
using asio::awaitable;
using asio::use_awaitable;

// Every step is asynchronous because only asynchronous operations honour the stream's deadline (Beast's
// blocking calls have none, so a registry that accepted and went silent would hang the caller for
// good). The deadline is one of inactivity: it is re-armed before every step and every body read.
template <class Stream>
awaitable<HttpResult> talk(Stream& stream, const Url& url, const std::string& method,
                           const std::map<std::string, std::string>& headers, const std::string& body,
                           std::size_t body_limit, std::chrono::milliseconds timeout, const BodySink* sink) {
  auto& tcp = beast::get_lowest_layer(stream);
  http::request<http::string_body> req{http::string_to_verb(method), url.target, 11};
  const bool default_port = url.port == (url.tls ? "443" : "80");
  std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  req.set(http::field::host, default_port ? host : host + ":" + url.port);
  req.set(http::field::user_agent, "platform/0.1");
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() || method == "PUT" || method == "POST") req.body() = body;
  req.prepare_payload();
  tcp.expires_after(timeout);
  co_await http::async_write(stream, req, use_awaitable);
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(sink ? boost::none : boost::optional<std::uint64_t>(body_limit));
  if (method == "HEAD") parser.skip(true);
  tcp.expires_after(timeout);
  co_await http::async_read_header(stream, buffer, parser, use_awaitable);
  HttpResult out;
  out.status = static_cast<int>(parser.get().result_int());
  for (const auto& f : parser.get()) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto& slot = out.headers[name];
    slot = slot.empty() ? std::string(f.value()) : slot + ", " + std::string(f.value());
  }
  // The body: to the sink when it is the content asked for, otherwise kept (an error document or a
  // redirect).
  const bool to_sink = sink && out.status == 200;
  std::array<char, 64 * 1024> chunk;
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    tcp.expires_after(timeout);
    auto [ec, ignored] = co_await http::async_read(stream, buffer, parser, asio::as_tuple(use_awaitable));
    if (ec && ec != http::error::need_buffer) throw boost::system::system_error(ec);
    const std::size_t n = chunk.size() - parser.get().body().size;
    if (to_sink) {
      (*sink)(std::string_view(chunk.data(), n));
    } else {
      if (out.body.size() + n > body_limit) throw boost::system::system_error(http::error::body_limit);
      out.body.append(chunk.data(), n);
    }
  }
  co_return out;
}

awaitable<HttpResult> exchange_async(asio::io_context& io, const Url& url, const std::string& method,
                                     const std::map<std::string, std::string>& headers, const std::string& body,
                                     std::chrono::milliseconds timeout, std::size_t body_limit, const BodySink* sink) {
  asio::ip::tcp::resolver resolver(io);
  auto endpoints = co_await resolver.async_resolve(url.host, url.port, use_awaitable);
  if (!url.tls) {
    beast::tcp_stream stream(io);
    stream.expires_after(timeout);
    co_await stream.async_connect(endpoints, use_awaitable);
    auto out = co_await talk(stream, url, method, headers, body, body_limit, timeout, sink);
    beast::error_code ignore;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignore);
    co_return out;
  }
  ssl::context ctx(ssl::context::tls_client);
  ctx.set_default_verify_paths();
  ctx.set_verify_mode(ssl::verify_peer);
  ctx.set_verify_callback(ssl::host_name_verification(url.host));
  beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
  if (!SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str()))
    throw PlatformError(ErrorCode::unavailable, "cannot set the TLS server name for " + url.host);
  auto& tcp = beast::get_lowest_layer(stream);
  tcp.expires_after(timeout);
  co_await tcp.async_connect(endpoints, use_awaitable);
  tcp.expires_after(timeout);
  co_await stream.async_handshake(ssl::stream_base::client, use_awaitable);
  auto out = co_await talk(stream, url, method, headers, body, body_limit, timeout, sink);
  tcp.expires_after(timeout);
  co_await stream.async_shutdown(asio::as_tuple(use_awaitable));  // a peer that skips close_notify is fine
  co_return out;
}

}  // namespace

HttpResult exchange(const Url& url, const std::string& method, const std::map<std::string, std::string>& headers,
                    const std::string& body, std::chrono::milliseconds timeout, std::size_t body_limit,
                    const BodySink* sink) {
  asio::io_context io;
  const std::string where = url.host + ":" + url.port;
  std::optional<HttpResult> result;
  std::exception_ptr failure;
  asio::co_spawn(io, exchange_async(io, url, method, headers, body, timeout, body_limit, sink),
                 [&](std::exception_ptr e, HttpResult r) {
                   if (e) failure = e;
                   else result = std::move(r);
                 });
  io.run();
  try {
    if (failure) std::rethrow_exception(failure);
    return std::move(*result);
  } catch (const boost::system::system_error& e) {
    if (e.code() == beast::error::timeout)
      throw PlatformError(ErrorCode::timed_out,
                          "the registry at " + where + " did not answer within " +
                              std::to_string(timeout.count()) + " ms",
                          "Check that the registry is up and reachable from the platform, then retry.");
    if (e.code() == http::error::body_limit)
      throw PlatformError(ErrorCode::unavailable,
                          "the registry at " + where + " sent a larger answer than the platform accepts",
                          "Manifests are small; check that the reference names an image.");
    throw PlatformError(ErrorCode::unavailable, "cannot reach the registry at " + where + ": " + e.code().message(),
                        "Check that the registry is up and reachable from the platform, then retry.");
  }
}

}  // namespace platform::oci
