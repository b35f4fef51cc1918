#include "ingress/edge.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "engine/error.h"
#include "ingress/client_hello.h"
#include "ingress/proxy_v2.h"

namespace platform::ingress {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;
constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

namespace {

// Counters by outcome; read by metrics_text().
struct Counters {
  std::atomic<std::uint64_t> accepted{0}, forwarded{0}, refused_limit{0}, refused_no_backend{0}, not_tls{0},
      hello_too_large{0}, hello_malformed{0}, hello_timeout{0}, unknown_sni{0}, connect_failed{0}, idle_closed{0},
      bytes_to_backend{0}, bytes_to_client{0};
  std::atomic<std::int64_t> active{0};
};

// Per endpoint or route (by id), across snapshots: its open connections and its round-robin position.
struct TargetState {
  std::atomic<int> active{0};
  std::atomic<std::uint64_t> next{0};
};

tcp::endpoint to_endpoint(const Address& a) { return {asio::ip::make_address(a.ip), a.port}; }

// Decrements a counter when the connection ends, however it ends.
struct Hold {
  std::atomic<std::int64_t>* global;
  std::shared_ptr<TargetState> target;
  ~Hold() {
    if (global) --*global;
    if (target) --target->active;
  }
};

}  // namespace

struct Edge::Impl {
  asio::io_context io;
  std::vector<std::thread> threads;
  Counters counters;
  mutable std::mutex mu;  // config, listeners, targets
  std::shared_ptr<const EdgeConfig> config = std::make_shared<EdgeConfig>();
  std::map<std::string, std::shared_ptr<TargetState>> targets;

  struct Listener {
    std::string key;  // "tcp <addr>" / "tls <addr>"
    Address address;
    bool tls = false;
    std::string endpoint_id;  // tcp: whose port this is (looked up in the current snapshot at accept)
    std::shared_ptr<tcp::acceptor> acceptor;
  };
  std::map<std::string, Listener> listeners;
  std::shared_ptr<tcp::acceptor> metrics_acceptor;

  std::shared_ptr<TargetState> state_for(const std::string& id) {
    std::lock_guard lock(mu);
    auto& s = targets[id];
    if (!s) s = std::make_shared<TargetState>();
    return s;
  }

  std::shared_ptr<const EdgeConfig> snapshot() const {
    std::lock_guard lock(mu);
    return config;
  }

  awaitable<void> accept_loop(std::shared_ptr<tcp::acceptor> acceptor, std::string key) {
    for (;;) {
      auto [ec, socket] = co_await acceptor->async_accept(tuple_awaitable);
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
      if (ec) {  // e.g. out of file descriptors: pause instead of spinning
        asio::steady_timer t(io, std::chrono::milliseconds(50));
        co_await t.async_wait(tuple_awaitable);
        continue;
      }
      ++counters.accepted;
      asio::co_spawn(io, handle(std::move(socket), key), asio::detached);
    }
  }

  // One client connection, from accept to close.
  awaitable<void> handle(tcp::socket client, std::string key) {
    auto cfg = snapshot();
    Hold hold{&counters.active, nullptr};
    if (++counters.active > cfg->limits.max_connections) {
      ++counters.refused_limit;
      co_return;
    }
    client.set_option(tcp::no_delay(true));
    const Target* target = nullptr;
    std::string sni;
    std::vector<std::uint8_t> hello;  // TLS: the bytes read to find the server name, sent on first
    bool tls = false;
    std::string endpoint_id;
    {
      std::lock_guard lock(mu);
      auto it = listeners.find(key);
      if (it != listeners.end()) {
        tls = it->second.tls;
        endpoint_id = it->second.endpoint_id;
      }
    }
    if (!tls) {
      for (const auto& e : cfg->endpoints)
        if (e.id == endpoint_id) target = &e;
    } else {
      auto got = co_await read_hello(client, *cfg, hello);
      if (got.status != ClientHello::Status::ok) co_return;
      sni = got.sni;
      target = cfg->route_for(sni);
      if (!target) {
        ++counters.unknown_sni;
        co_return;
      }
    }
    if (!target) co_return;  // the endpoint went away between accept and now
    auto state = state_for(target->id);
    hold.target = state;
    if (++state->active > target->max_connections && target->max_connections > 0) {
      ++counters.refused_limit;
      co_return;
    }
    if (target->backends.empty()) {
      ++counters.refused_no_backend;
      co_return;
    }
    tcp::socket backend(io);
    bool connected = false;
    for (std::size_t attempt = 0; attempt < target->backends.size() && !connected; ++attempt) {
      const auto& b = target->backends[state->next++ % target->backends.size()];
      connected = co_await connect(backend, to_endpoint(b), std::chrono::milliseconds(cfg->limits.connect_timeout_ms));
    }
    if (!connected) {
      ++counters.connect_failed;
      co_return;
    }
    backend.set_option(tcp::no_delay(true));
    // The PROXY header and what the client already sent go in one write: the header whole, first.
    std::vector<std::uint8_t> first;
    if (target->proxy_v2) {
      boost::system::error_code ec;
      ProxyHeader h;
      auto peer = client.remote_endpoint(ec);
      auto local = client.local_endpoint(ec);
      if (ec) co_return;
      h.source = *SocketAddress::parse(peer.address().to_string(), peer.port());
      h.destination = *SocketAddress::parse(local.address().to_string(), local.port());
      h.authority = sni;
      first = encode_proxy_v2(h);
    }
    first.insert(first.end(), hello.begin(), hello.end());
    if (!first.empty()) {
      auto [ec, n] = co_await asio::async_write(backend, asio::buffer(first), tuple_awaitable);
      if (ec) co_return;
      counters.bytes_to_backend += hello.size();
    }
    ++counters.forwarded;
    auto last = std::make_shared<Clock::time_point>(Clock::now());
    co_await ((pump(client, backend, last, counters.bytes_to_backend) && pump(backend, client, last, counters.bytes_to_client)) ||
              watchdog(last, std::chrono::milliseconds(cfg->limits.idle_timeout_ms)));
    boost::system::error_code ignore;
    client.close(ignore);
    backend.close(ignore);
  }

  awaitable<ClientHello> read_hello(tcp::socket& client, const EdgeConfig& cfg, std::vector<std::uint8_t>& buf) {
    asio::steady_timer deadline(io, std::chrono::milliseconds(cfg.limits.hello_timeout_ms));
    ClientHello got;
    std::array<std::uint8_t, 4096> chunk;
    // Room for the largest hello in the most records the reader accepts.
    const std::size_t cap = static_cast<std::size_t>(cfg.limits.max_hello_bytes) + 64 * 5 + 4;
    for (;;) {
      auto result = co_await (client.async_read_some(asio::buffer(chunk), tuple_awaitable) ||
                              deadline.async_wait(tuple_awaitable));
      if (result.index() == 1) {
        ++counters.hello_timeout;
        got.status = ClientHello::Status::malformed;
        co_return got;
      }
      auto [ec, n] = std::get<0>(result);
      if (ec) {
        got.status = ClientHello::Status::malformed;
        co_return got;
      }
      buf.insert(buf.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
      got = read_client_hello(buf, static_cast<std::size_t>(cfg.limits.max_hello_bytes));
      if (got.status == ClientHello::Status::need_more && buf.size() > cap) got.status = ClientHello::Status::too_large;
      switch (got.status) {
        case ClientHello::Status::need_more: continue;
        case ClientHello::Status::ok: co_return got;
        case ClientHello::Status::not_tls: ++counters.not_tls; co_return got;
        case ClientHello::Status::too_large: ++counters.hello_too_large; co_return got;
        case ClientHello::Status::malformed: ++counters.hello_malformed; co_return got;
      }
    }
  }

  awaitable<bool> connect(tcp::socket& s, const tcp::endpoint& to, std::chrono::milliseconds timeout) {
    boost::system::error_code ignore;
    if (s.is_open()) s.close(ignore);
    asio::steady_timer t(io, timeout);
    auto result = co_await (s.async_connect(to, tuple_awaitable) || t.async_wait(tuple_awaitable));
    if (result.index() == 1) co_return false;
    auto [ec] = std::get<0>(result);
    co_return !ec;
  }

  // Copies one direction until its end; then half-closes the other side's sending direction.
  awaitable<void> pump(tcp::socket& from, tcp::socket& to, std::shared_ptr<Clock::time_point> last,
                       std::atomic<std::uint64_t>& bytes) {
    std::array<std::uint8_t, 65536> buf;
    for (;;) {
      auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), tuple_awaitable);
      if (n > 0) {
        *last = Clock::now();
        auto [wec, written] = co_await asio::async_write(to, asio::buffer(buf.data(), n), tuple_awaitable);
        bytes += written;
        if (wec) break;
      }
      if (ec == asio::error::eof) {
        boost::system::error_code ignore;
        to.shutdown(tcp::socket::shutdown_send, ignore);  // half-close forwarded
        co_return;
      }
      if (ec) break;
    }
    boost::system::error_code ignore;  // a reset or error: both sides go
    from.close(ignore);
    to.close(ignore);
  }

  awaitable<void> watchdog(std::shared_ptr<Clock::time_point> last, std::chrono::milliseconds idle) {
    asio::steady_timer t(io);
    for (;;) {
      const auto due = *last + idle;
      if (Clock::now() >= due) {
        ++counters.idle_closed;
        co_return;
      }
      t.expires_at(due);
      auto [ec] = co_await t.async_wait(tuple_awaitable);
      if (ec) co_return;  // cancelled: the connection ended
    }
  }

  awaitable<void> metrics_loop(std::shared_ptr<tcp::acceptor> acceptor, Edge* edge) {
    for (;;) {
      auto [ec, s] = co_await acceptor->async_accept(tuple_awaitable);
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
      if (ec) continue;
      asio::co_spawn(io, serve_metrics_once(std::move(s), edge), asio::detached);
    }
  }

  awaitable<void> serve_metrics_once(tcp::socket s, Edge* edge) {
    std::string req;
    std::array<char, 1024> buf;
    asio::steady_timer t(io, std::chrono::seconds(5));
    while (req.find("\r\n\r\n") == std::string::npos && req.size() < 8192) {
      auto r = co_await (s.async_read_some(asio::buffer(buf), tuple_awaitable) || t.async_wait(tuple_awaitable));
      if (r.index() == 1) co_return;
      auto [ec, n] = std::get<0>(r);
      if (ec) co_return;
      req.append(buf.data(), n);
    }
    const bool metrics = req.rfind("GET /metrics ", 0) == 0;
    const auto body = metrics ? edge->metrics_text() : std::string("not found: GET /metrics\n");
    const auto res = fmt::format("HTTP/1.1 {}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n"
                                 "Connection: close\r\n\r\n{}",
                                 metrics ? "200 OK" : "404 Not Found", body.size(), body);
    co_await asio::async_write(s, asio::buffer(res), tuple_awaitable);
  }
};

Edge::Edge(int threads) : impl_(std::make_unique<Impl>()) {
  auto work = std::make_shared<asio::executor_work_guard<asio::io_context::executor_type>>(impl_->io.get_executor());
  for (int i = 0; i < std::max(1, threads); ++i)
    impl_->threads.emplace_back([this, work] { impl_->io.run(); });
}

Edge::~Edge() {
  {
    std::lock_guard lock(impl_->mu);
    for (auto& [k, l] : impl_->listeners) asio::post(impl_->io, [a = l.acceptor] { boost::system::error_code e; a->close(e); });
  }
  impl_->io.stop();
  for (auto& t : impl_->threads) t.join();
}

std::shared_ptr<const EdgeConfig> Edge::current() const { return impl_->snapshot(); }

Edge::Applied Edge::apply(std::shared_ptr<const EdgeConfig> config) {
  auto& im = *impl_;
  std::map<std::string, Impl::Listener> wanted;
  for (const auto& e : config->endpoints)
    for (const auto& a : e.listen) wanted["tcp " + a.str()] = {"tcp " + a.str(), a, false, e.id, nullptr};
  for (const auto& a : config->tls_listen) wanted["tls " + a.str()] = {"tls " + a.str(), a, true, "", nullptr};

  Applied out;
  std::lock_guard lock(im.mu);
  // 1. Bind what is new; on any failure close what this call opened and change nothing.
  std::vector<std::string> opened;
  for (auto& [key, l] : wanted) {
    if (im.listeners.count(key)) continue;
    try {
      auto acc = std::make_shared<tcp::acceptor>(im.io);
      const auto ep = to_endpoint(l.address);
      acc->open(ep.protocol());
      acc->set_option(tcp::acceptor::reuse_address(true));
      if (ep.address().is_v6()) acc->set_option(asio::ip::v6_only(true));  // IPv4 only where the add-on says
      acc->bind(ep);
      acc->listen(asio::socket_base::max_listen_connections);
      l.acceptor = acc;
      opened.push_back(key);
    } catch (const boost::system::system_error& e) {
      for (const auto& k : opened) {
        boost::system::error_code ignore;
        wanted[k].acceptor->close(ignore);
      }
      throw PlatformError(ErrorCode::unavailable, "edge: cannot listen on " + l.address.str() + ": " + e.code().message(),
                          "Another process holds the address, or it is not configured on this host; the edge keeps "
                          "serving its previous config.");
    }
  }
  // 2. Swap: new listeners start accepting, unchanged ones keep their socket, removed ones stop accepting
  // (their connections finish on the snapshot they started with).
  im.config = config;
  for (auto it = im.listeners.begin(); it != im.listeners.end();) {
    auto w = wanted.find(it->first);
    if (w == wanted.end()) {
      asio::post(im.io, [a = it->second.acceptor] {
        boost::system::error_code e;
        a->close(e);
      });
      ++out.closed;
      it = im.listeners.erase(it);
    } else {
      it->second.endpoint_id = w->second.endpoint_id;  // the port may now belong to another endpoint id
      ++out.kept;
      ++it;
    }
  }
  for (const auto& key : opened) {
    auto l = wanted[key];
    im.listeners[key] = l;
    asio::co_spawn(im.io, im.accept_loop(l.acceptor, key), asio::detached);
    ++out.opened;
  }
  return out;
}

std::string Edge::metrics_text() const {
  const auto& c = impl_->counters;
  const auto cfg = impl_->snapshot();
  std::string out;
  auto metric = [&](const char* name, const char* help, const char* type, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
  };
  metric("platform_edge_config_version", "The version of the snapshot being served.", "gauge", cfg->version);
  metric("platform_edge_connections_active", "Client connections open now.", "gauge", c.active.load());
  metric("platform_edge_connections_accepted_total", "Client connections accepted.", "counter", c.accepted.load());
  metric("platform_edge_connections_forwarded_total", "Connections forwarded to a backend.", "counter", c.forwarded.load());
  out += "# HELP platform_edge_connections_closed_total Connections closed before forwarding, by reason.\n"
         "# TYPE platform_edge_connections_closed_total counter\n";
  for (const auto& [reason, v] : std::vector<std::pair<const char*, std::uint64_t>>{
           {"limit", c.refused_limit.load()},
           {"no_backend", c.refused_no_backend.load()},
           {"not_tls", c.not_tls.load()},
           {"hello_too_large", c.hello_too_large.load()},
           {"hello_malformed", c.hello_malformed.load()},
           {"hello_timeout", c.hello_timeout.load()},
           {"unknown_sni", c.unknown_sni.load()},
           {"connect_failed", c.connect_failed.load()}})
    out += fmt::format("platform_edge_connections_closed_total{{reason=\"{}\"}} {}\n", reason, v);
  metric("platform_edge_idle_closed_total", "Forwarded connections closed for being idle.", "counter", c.idle_closed.load());
  out += "# HELP platform_edge_bytes_total Bytes forwarded, by direction.\n# TYPE platform_edge_bytes_total counter\n";
  out += fmt::format("platform_edge_bytes_total{{direction=\"to_backend\"}} {}\n", c.bytes_to_backend.load());
  out += fmt::format("platform_edge_bytes_total{{direction=\"to_client\"}} {}\n", c.bytes_to_client.load());
  return out;
}

void Edge::serve_metrics(const Address& address) {
  auto acc = std::make_shared<tcp::acceptor>(impl_->io);
  const auto ep = to_endpoint(address);
  try {
    acc->open(ep.protocol());
    acc->set_option(tcp::acceptor::reuse_address(true));
    acc->bind(ep);
    acc->listen();
  } catch (const boost::system::system_error& e) {
    throw PlatformError(ErrorCode::unavailable, "edge: cannot serve metrics on " + address.str() + ": " + e.code().message(),
                        "Pick another --metrics address.");
  }
  impl_->metrics_acceptor = acc;
  asio::co_spawn(impl_->io, impl_->metrics_loop(acc, this), asio::detached);
}

}  // namespace platform::ingress
