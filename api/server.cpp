#include "api/server.h"

#include <spdlog/spdlog.h>

#include <array>

#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <thread>

#include "api/auth.h"
#include "api/beast_request.h"
#include "api/hub.h"
#include "api/metrics.h"
#include "api/nudges.h"
#include "api/routes.h"
#include "api/warnings.h"
#include "engine/db.h"
#include "engine/error_details.h"
#include "engine/ids.h"
#include "engine/listener.h"

namespace platform::api {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

struct Server::Impl {
  ServerOptions options;
  std::string conninfo;
  Signal& wake;
  db::Pool pool;
  Authenticator auth;
  Hub hub;
  Metrics metrics;
  Context ctx;
  asio::io_context io;
  Nudges nudges;  // exec sessions' long polls, woken by NOTIFY platform_sessions
  Listener session_listener;
  asio::thread_pool workers;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  std::uint16_t bound_port = 0;
  std::atomic<bool> stopped{false};

  Impl(ServerOptions o, std::string ci, Signal& w)
      : options(std::move(o)),
        conninfo(std::move(ci)),
        wake(w),
        pool(conninfo, options.db_pool_size, "platformd-api"),
        auth(pool),
        hub(conninfo),
        ctx{pool, hub, auth, metrics, options.apply_wait, {}, std::chrono::milliseconds(5000), options.edge_tls_listen},
        io(options.io_threads),
        session_listener(io, conninfo, "platform_sessions",
                         std::function<void(const std::string&)>([this](const std::string& key) { nudges.nudge(key); })),
        workers(static_cast<std::size_t>(options.worker_threads)) {
    if (!options.secrets_key_file.empty()) ctx.secret_keys.push_back(secrets::load_key_file(options.secrets_key_file));
    metrics.add_gauge({"platform_db_pool_connections", "Open connections of the API's database pool.",
                       [this] { return static_cast<double>(pool.open_connections()); }});
    metrics.add_gauge({"platform_watch_waiters", "Long polls waiting for events.",
                       [this] { return static_cast<double>(hub.waiters()); }});
    metrics.add_gauge({"platform_watch_buffered_events", "Events held in the watch fan-out ring.",
                       [this] { return static_cast<double>(hub.buffered()); }});
  }

  // Runs blocking work (database) on the worker pool and resumes on the caller's executor.
  template <class F>
  awaitable<Response> blocking(F fn) {
    co_return co_await asio::co_spawn(workers, [fn = std::move(fn)]() -> awaitable<Response> { co_return fn(); },
                                      use_awaitable);
  }

  // The route's answer, with the warnings for its caller (api/warnings.h) as Warning headers.
  awaitable<Response> dispatch(Request& req) {
    std::vector<std::string> warnings;
    auto resp = co_await dispatch_route(req, warnings);
    for (const auto& w : warnings) resp.headers.emplace_back("Warning", warning_header(w));
    co_return resp;
  }

  awaitable<Response> dispatch_route(Request& req, std::vector<std::string>& warnings) {
    bool path_matched = false;
    Params params;
    const Route* route = match(req.method, req.path, params, &path_matched);
    if (!route) {
      if (path_matched)
        co_return problem({ErrorCode::method_not_allowed, req.method + " is not allowed on " + req.path,
                           "See /v1/openapi.json for the methods of each path."},
                          req.request_id);
      co_return problem({ErrorCode::not_found, "no such endpoint: " + req.path.substr(0, 200),
                         "See /v1/openapi.json for every endpoint."},
                        req.request_id);
    }
    if (route->public_handler) co_return co_await blocking([&] { return route->public_handler(ctx, req); });
    if (route->handler)
      co_return co_await blocking([&] {
        auto principal = auth.authenticate(req);
        warnings = request_warnings(principal, req);
        return route->handler(ctx, req, principal, params);
      });
    // A long poll: prepared with the database, then served from the hub without one.
    WatchPlan plan;
    co_await blocking([&] {
      if (route->public_watch) {
        plan = route->public_watch(ctx, req);
      } else {
        auto principal = auth.authenticate(req);
        warnings = request_warnings(principal, req);
        plan = route->watch(ctx, req, principal, params);
      }
      return Response{};
    });
    auto deadline = std::chrono::steady_clock::now() + plan.wait;
    if (plan.level) {
      // Woken by new events, or by its own key's NOTIFY (exec sessions).
      std::optional<Nudges::Hold> hold;
      if (!plan.nudge_key.empty()) hold.emplace(nudges, plan.nudge_key);
      for (;;) {
        const auto head = hub.head();
        const auto generation = hold ? hold->generation() : 0;
        const bool last = std::chrono::steady_clock::now() >= deadline;
        std::optional<Response> answer;
        co_await blocking([&] {
          answer = plan.level(last);
          return Response{};
        });
        if (answer) co_return std::move(*answer);
        if (hold)
          co_await hold->wait(generation, deadline);
        else
          co_await hub.wait(head, deadline);
      }
    }
    for (;;) {
      std::vector<events::Recorded> found;
      events::Cursor next = plan.after;
      if (auto mem = hub.from_memory(plan.after, plan.filter, plan.limit)) {
        found = std::move(mem->events);
        next = mem->next;
      } else {
        co_await blocking([&] {
          auto page = pool.read([&](pqxx::transaction_base& tx) { return events::read_after(tx, plan.after, plan.filter, plan.limit); });
          found = std::move(page.events);
          next = page.next;
          return Response{};
        });
      }
      if (!found.empty() || std::chrono::steady_clock::now() >= deadline)
        co_return json_response(200, events_page_json(found, next));
      plan.after = next;
      co_await hub.wait(plan.after, deadline);
    }
  }

  template <class Stream>
  awaitable<void> write(Stream& stream, const Response& resp, unsigned version, bool keep_alive) {
    http::response<http::string_body> out{static_cast<http::status>(resp.status), version};
    out.set(http::field::server, "platformd");
    out.set(http::field::content_type, resp.content_type);
    for (const auto& [k, v] : resp.headers) out.insert(k, v);  // (insert: a header may come more than once)
    out.keep_alive(keep_alive);
    out.body() = resp.body;
    out.prepare_payload();
    metrics.responses_by_class[std::min(resp.status / 100, 5)]++;
    stream.expires_after(std::chrono::seconds(30));
    co_await http::async_write(stream, out, asio::as_tuple(use_awaitable));
  }

  // After answering a request we stopped reading (too large, malformed), read and drop what the client
  // is still sending for a short, bounded while: closing with unread data would reset the connection
  // and could destroy the answer before the client reads it.
  awaitable<void> drain(beast::tcp_stream& stream) {
    beast::error_code ignore;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignore);
    stream.expires_after(std::chrono::seconds(2));
    std::array<char, 65536> sink;
    for (std::size_t total = 0; total < (8u << 20);) {
      auto [ec, n] = co_await stream.async_read_some(asio::buffer(sink), asio::as_tuple(use_awaitable));
      if (ec) break;
      total += n;
    }
  }

  awaitable<void> session(beast::tcp_stream stream) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(options.body_limit);
      parser.header_limit(static_cast<std::uint32_t>(options.header_limit));
      stream.expires_after(options.request_timeout);
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, asio::as_tuple(use_awaitable));
      const auto request_id = new_id("req");
      if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset) break;
      // A kept-alive connection that sends no next request is closed without a word: an answer to a
      // request nobody sent would be read as the answer to the client's next one.
      if (ec == beast::error::timeout && !parser.got_some() && buffer.size() == 0) break;
      if (ec) {
        Error e{ErrorCode::invalid_request, "malformed HTTP request: " + ec.message(), "Send a valid HTTP/1.1 request."};
        if (ec == http::error::body_limit)
          e = {ErrorCode::payload_too_large, "request body exceeds " + std::to_string(options.body_limit) + " bytes",
               "Send a smaller body."};
        else if (ec == http::error::header_limit)
          e = {ErrorCode::headers_too_large, "request headers exceed " + std::to_string(options.header_limit) + " bytes",
               "Send fewer or shorter headers."};
        else if (ec == beast::error::timeout)
          e = {ErrorCode::request_timeout, "the request was not received within " +
                                               std::to_string(options.request_timeout.count()) + " ms",
               "Send the whole request promptly."};
        metrics.requests_total++;
        co_await write(stream, problem(e, request_id), 11, false);
        co_await drain(stream);
        break;
      }
      metrics.requests_total++;
      auto& msg = parser.get();
      bool keep_alive = msg.keep_alive();
      Response resp;
      try {
        auto req = to_request(msg);
        req.request_id = request_id;
        stream.expires_never();  // a long poll may legitimately wait
        resp = co_await dispatch(req);
      } catch (const DetailedError& e) {
        resp = problem(e.error(), request_id, e.details());
      } catch (const PlatformError& e) {
        resp = problem(e.error(), request_id);
      } catch (const std::exception& e) {
        resp = problem(db::translate(e).error(), request_id);
      }
      resp.headers.emplace_back("X-Request-Id", request_id);
      co_await write(stream, resp, msg.version(), keep_alive);
      if (!keep_alive) break;
    }
    beast::error_code ignore;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignore);
  }

  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor->async_accept(asio::make_strand(io), asio::as_tuple(use_awaitable));
      if (ec) {
        if (stopped || ec == asio::error::operation_aborted) co_return;
        spdlog::warn("accept failed: {}", ec.message());
        // Out of file descriptors: back off instead of spinning.
        asio::steady_timer t(io, std::chrono::milliseconds(50));
        co_await t.async_wait(asio::as_tuple(use_awaitable));
        continue;
      }
      metrics.connections_total++;
      if (static_cast<std::size_t>(metrics.connections_active.load()) >= options.max_connections) {
        metrics.connections_refused++;
        auto ex = socket.get_executor();
        asio::co_spawn(ex, refuse(beast::tcp_stream(std::move(socket))), asio::detached);
        continue;
      }
      metrics.connections_active++;
      auto ex = socket.get_executor();
      asio::co_spawn(ex, session(beast::tcp_stream(std::move(socket))), [this](std::exception_ptr) {
        metrics.connections_active--;
      });
    }
  }

  awaitable<void> refuse(beast::tcp_stream stream) {
    co_await write(stream,
                   problem({ErrorCode::too_many_connections, "the server is at its connection limit",
                            "Retry shortly."},
                           new_id("req")),
                   11, false);
    beast::error_code ignore;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignore);
  }
};

Server::Server(ServerOptions options, std::string conninfo, Signal& wake)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(conninfo), wake)) {}

Server::~Server() { stop(); }

void Server::start() {
  auto& i = *impl_;
  auto address = asio::ip::make_address(i.options.address);
  tcp::endpoint ep(address, i.options.port);
  i.acceptor.emplace(i.io);
  i.acceptor->open(ep.protocol());
  i.acceptor->set_option(asio::socket_base::reuse_address(true));
  if (address.is_v6()) i.acceptor->set_option(asio::ip::v6_only(true));
  i.acceptor->bind(ep);
  i.acceptor->listen(asio::socket_base::max_listen_connections);
  i.bound_port = i.acceptor->local_endpoint().port();
  i.hub.start(i.wake);
  i.session_listener.start();
  asio::co_spawn(i.io, i.accept_loop(), asio::detached);
  for (int t = 0; t < i.options.io_threads; ++t) i.threads.emplace_back([&i] { i.io.run(); });
}

void Server::stop() {
  auto& i = *impl_;
  if (i.stopped.exchange(true)) return;
  asio::post(i.io, [&i] {
    beast::error_code ignore;
    if (i.acceptor) i.acceptor->close(ignore);
  });
  i.session_listener.stop();
  i.io.stop();
  for (auto& t : i.threads) t.join();
  i.threads.clear();
  i.workers.join();
  i.hub.stop();
}

std::uint16_t Server::port() const { return impl_->bound_port; }
db::Pool& Server::pool() { return impl_->pool; }

}  // namespace platform::api
