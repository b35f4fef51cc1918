#include "ingress/edge.h"

#include <netinet/in.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

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
  std::atomic<std::int64_t>* global = nullptr;
  std::shared_ptr<TargetState> target;
  Hold(std::atomic<std::int64_t>* g, std::shared_ptr<TargetState> t) : global(g), target(std::move(t)) {}
  Hold(Hold&& o) noexcept : global(std::exchange(o.global, nullptr)), target(std::move(o.target)) {}
  Hold(const Hold&) = delete;
  Hold& operator=(const Hold&) = delete;
  ~Hold() {
    if (global) --*global;
    if (target) --target->active;
  }
};

// A forwarded connection: both sockets, when bytes last moved, and the idle timer (a callback that
// re-arms itself, not a coroutine). Shared by the two directions; closed when the last one ends.
struct Conn : std::enable_shared_from_this<Conn> {
  tcp::socket client, backend;
  asio::steady_timer idle;
  std::optional<Hold> hold;  // the connection counts until both directions have ended
  Clock::time_point last = Clock::now();
  int directions = 2;  // still copying
  explicit Conn(tcp::socket c) : client(std::move(c)), backend(client.get_executor()), idle(client.get_executor()) {}
  void close() {
    boost::system::error_code ignore;
    idle.cancel();
    client.close(ignore);
    backend.close(ignore);
  }
  // An aborted connection (a reset or an error on one side) is aborted on the other side too: closed
  // with a reset, as the peer would have seen it without the edge, and no TIME_WAIT left here.
  void abort() {
    boost::system::error_code ignore;
    client.set_option(asio::socket_base::linger(true, 0), ignore);
    backend.set_option(asio::socket_base::linger(true, 0), ignore);
    close();
  }
  void watch_idle(std::chrono::milliseconds limit, std::atomic<std::uint64_t>& closed) {
    idle.expires_at(last + limit);
    idle.async_wait([self = shared_from_this(), limit, &closed](boost::system::error_code ec) {
      if (ec || self->directions == 0) return;
      if (Clock::now() - self->last >= limit) {
        ++closed;
        self->close();
        return;
      }
      self->watch_idle(limit, closed);
    });
  }
};

}  // namespace

struct Edge::Impl {
  std::vector<std::thread> threads;
  Counters counters;
  mutable std::mutex mu;  // config, listeners, targets
  std::shared_ptr<const EdgeConfig> config = std::make_shared<EdgeConfig>();
  std::map<std::string, std::shared_ptr<TargetState>> targets;

  // What a connection on a listener needs, fixed per snapshot: read with one lock per connection.
  struct Plan {
    std::shared_ptr<const EdgeConfig> config;
    bool tls = false;
    const Target* target = nullptr;               // tcp: the endpoint (inside `config`)
    std::shared_ptr<TargetState> target_state;    // tcp: its state
    std::map<std::string, std::shared_ptr<TargetState>> route_states;  // tls: by route id
  };
  struct Slot {
    std::mutex mu;
    std::shared_ptr<const Plan> plan;
    std::shared_ptr<const Plan> get() {
      std::lock_guard lock(mu);
      return plan;
    }
  };
  struct Listener {
    std::string key;  // "tcp <addr>" / "tls <addr>"
    Address address;
    bool tls = false;
    std::string endpoint_id;  // tcp: whose port this is
    std::shared_ptr<tcp::acceptor> acceptor;
    std::shared_ptr<Slot> slot = std::make_shared<Slot>();
  };
  std::map<std::string, Listener> listeners;
  std::shared_ptr<tcp::acceptor> metrics_acceptor;
  // Declared last, so destroyed first: the handlers it destroys (connections, their counts) still find
  // the counters, targets and locks above alive.
  asio::io_context io;

  std::shared_ptr<TargetState> state_for_locked(const std::string& id) {  // with `mu` held
    auto& s = targets[id];
    if (!s) s = std::make_shared<TargetState>();
    return s;
  }

  std::shared_ptr<const Plan> plan_for(const Listener& l, const std::shared_ptr<const EdgeConfig>& cfg) {
    auto p = std::make_shared<Plan>();
    p->config = cfg;
    p->tls = l.tls;
    if (l.tls) {
      for (const auto& r : cfg->routes) p->route_states[r.id] = state_for_locked(r.id);
    } else {
      for (const auto& e : cfg->endpoints)
        if (e.id == l.endpoint_id) {
          p->target = &e;
          p->target_state = state_for_locked(e.id);
        }
    }
    return p;
  }

  std::shared_ptr<const EdgeConfig> snapshot() const {
    std::lock_guard lock(mu);
    return config;
  }

  awaitable<void> accept_loop(std::shared_ptr<tcp::acceptor> acceptor, std::shared_ptr<Slot> slot) {
    for (;;) {
      // Each connection on a strand of its own: its sockets and timers are never used by two threads at once.
      // (With one thread there is nothing to order, and the strand's cost is saved.)
      boost::system::error_code ec;
      tcp::socket socket(io);
      if (threads.size() > 1) {
        auto [e, s] = co_await acceptor->async_accept(asio::make_strand(io), tuple_awaitable);
        ec = e;
        socket = tcp::socket(std::move(s));
      } else {
        auto [e, s] = co_await acceptor->async_accept(io, tuple_awaitable);
        ec = e;
        socket = tcp::socket(std::move(s));
      }
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
      if (ec) {  // e.g. out of file descriptors: pause instead of spinning
        asio::steady_timer t(io, std::chrono::milliseconds(50));
        co_await t.async_wait(tuple_awaitable);
        continue;
      }
      // Under load the next async_accept takes a waiting connection at once (a speculative accept,
      // without an epoll round), so no loop of our own here: it would cost a failed accept per wake-up.
      start(std::move(socket), slot->get());
    }
  }

  void start(tcp::socket socket, const std::shared_ptr<const Plan>& plan) {
    ++counters.accepted;
    auto executor = socket.get_executor();
    asio::co_spawn(executor, handle(std::move(socket), plan), asio::detached);
  }

  // One client connection, from accept to close.
  awaitable<void> handle(tcp::socket client, std::shared_ptr<const Plan> plan) {
    const auto& cfg = plan->config;
    Hold hold{&counters.active, nullptr};
    if (++counters.active > cfg->limits.max_connections) {
      ++counters.refused_limit;
      co_return;
    }
    boost::system::error_code ec;
    client.set_option(tcp::no_delay(true), ec);
    const Target* target = plan->target;
    std::shared_ptr<TargetState> state = plan->target_state;
    std::string sni;
    std::vector<std::uint8_t> hello;  // TLS: the bytes read to find the server name, sent on first
    if (plan->tls) {
      auto got = co_await read_hello(client, *cfg, hello);
      if (got.status != ClientHello::Status::ok) co_return;
      sni = got.sni;
      target = cfg->route_for(sni);
      if (!target) {
        ++counters.unknown_sni;
        co_return;
      }
      state = plan->route_states.at(target->id);
    }
    if (!target) co_return;  // the endpoint went away between accept and now
    hold.target = state;
    if (++state->active > target->max_connections && target->max_connections > 0) {
      ++counters.refused_limit;
      co_return;
    }
    if (target->backends.empty()) {
      ++counters.refused_no_backend;
      co_return;
    }
    auto conn = std::make_shared<Conn>(std::move(client));
    conn->hold.emplace(std::move(hold));  // from here the connection holds its counts
    bool connected = false;
    for (std::size_t attempt = 0; attempt < target->backends.size() && !connected; ++attempt) {
      const auto& b = target->backends[state->next++ % target->backends.size()];
      connected = co_await connect(conn->backend, to_endpoint(b), std::chrono::milliseconds(cfg->limits.connect_timeout_ms));
    }
    if (!connected) {
      ++counters.connect_failed;
      co_return;
    }
    conn->backend.set_option(tcp::no_delay(true), ec);
    // The PROXY header and what the client already sent go in one write: the header whole, first.
    std::vector<std::uint8_t> first;
    if (target->proxy_v2) {
      ProxyHeader h;
      auto peer = conn->client.remote_endpoint(ec);
      auto local = conn->client.local_endpoint(ec);
      if (ec) co_return;
      h.source = *SocketAddress::parse(peer.address().to_string(), peer.port());
      h.destination = *SocketAddress::parse(local.address().to_string(), local.port());
      h.authority = sni;
      first = encode_proxy_v2(h);
    }
    first.insert(first.end(), hello.begin(), hello.end());
    if (!first.empty()) {
      auto [wec, n] = co_await asio::async_write(conn->backend, asio::buffer(first), tuple_awaitable);
      if (wec) co_return;
      counters.bytes_to_backend += hello.size();
    }
    ++counters.forwarded;
    conn->watch_idle(std::chrono::milliseconds(cfg->limits.idle_timeout_ms), counters.idle_closed);
    // One direction on a coroutine of its own, the other here; the connection ends when both have.
    asio::co_spawn(conn->client.get_executor(), pump(conn, conn->backend, conn->client, counters.bytes_to_client),
                   asio::detached);
    co_await pump(conn, conn->client, conn->backend, counters.bytes_to_backend);
  }

  awaitable<ClientHello> read_hello(tcp::socket& client, const EdgeConfig& cfg, std::vector<std::uint8_t>& buf) {
    asio::steady_timer deadline(client.get_executor(), std::chrono::milliseconds(cfg.limits.hello_timeout_ms));
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
    asio::steady_timer t(s.get_executor(), timeout);
    bool expired = false;
    t.async_wait([&s, &expired](boost::system::error_code ec) {
      if (ec) return;
      expired = true;
      boost::system::error_code e;
      s.cancel(e);
    });
    auto [ec] = co_await s.async_connect(to, tuple_awaitable);
    t.cancel();
    co_return !ec && !expired;
  }

  // Copies one direction until its end, then half-closes the other side's sending direction. A reset or
  // error ends both directions.
  awaitable<void> pump(std::shared_ptr<Conn> conn, tcp::socket& from, tcp::socket& to, std::atomic<std::uint64_t>& bytes) {
    // 16 KiB to start (most connections are small and short); a read that fills it moves the
    // direction to a 128 KiB buffer, for bulk transfers.
    std::array<std::uint8_t, 16384> small;
    std::unique_ptr<std::uint8_t[]> big;
    asio::mutable_buffer buf = asio::buffer(small);
    bool clean = false;
    for (;;) {
      auto [ec, n] = co_await from.async_read_some(buf, tuple_awaitable);
      if (n > 0) {
        conn->last = Clock::now();
        auto [wec, written] = co_await asio::async_write(to, asio::buffer(buf.data(), n), tuple_awaitable);
        if (n == buf.size() && !big) {
          big = std::make_unique<std::uint8_t[]>(128 * 1024);
          buf = asio::buffer(big.get(), 128 * 1024);
        }
        bytes += written;
        if (wec) break;
      }
      if (ec == asio::error::eof) {
        boost::system::error_code ignore;
        to.shutdown(tcp::socket::shutdown_send, ignore);  // half-close forwarded
        clean = true;
        break;
      }
      if (ec) break;
    }
    if (!clean) conn->abort();
    else if (--conn->directions == 0) conn->close();
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
  // Only the pending handlers still hold sockets now; destroying the io_context (first) ends them.
  impl_->listeners.clear();
  impl_->metrics_acceptor.reset();
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
      // An env's address may not be configured on an interface: it is served through a local route for
      // the whole pool (AnyIP, docs/network.md), which needs a free bind.
      const int one = 1;
      if (ep.address().is_v6()) ::setsockopt(acc->native_handle(), IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one);
      else ::setsockopt(acc->native_handle(), IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
      acc->bind(ep);
      acc->listen(asio::socket_base::max_listen_connections);
      acc->non_blocking(true);
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
  for (auto& [key, l] : im.listeners)  // kept listeners serve the new snapshot from their next connection
    if (auto w = wanted.find(key); w != wanted.end()) {
      l.endpoint_id = w->second.endpoint_id;  // the port may now belong to another endpoint id
      std::lock_guard slot_lock(l.slot->mu);
      l.slot->plan = im.plan_for(l, config);
    }
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
      ++out.kept;
      ++it;
    }
  }
  for (const auto& key : opened) {
    auto l = wanted[key];
    l.slot->plan = im.plan_for(l, config);
    im.listeners[key] = l;
    asio::co_spawn(im.io, im.accept_loop(l.acceptor, l.slot), asio::detached);
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
