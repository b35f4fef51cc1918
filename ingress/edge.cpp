#include "ingress/edge.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

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
#include <cerrno>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "engine/error.h"
#include "ingress/backend_health.h"
#include "ingress/client_hello.h"
#include "ingress/proxy_v2.h"
#include "ingress/relay.h"

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

// The PROXY v2 header for a client's connection: its address and the address it reached, and the
// server name it asked for. Empty when the socket has no peer any more.
std::vector<std::uint8_t> proxy_header(int fd, const std::string& sni) {
  sockaddr_storage peer{}, local{};
  socklen_t peer_len = sizeof peer, local_len = sizeof local;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0)
    return {};
  ProxyHeader h;
  h.source = SocketAddress::from(reinterpret_cast<const sockaddr*>(&peer));
  h.destination = SocketAddress::from(reinterpret_cast<const sockaddr*>(&local));
  h.authority = sni;
  return encode_proxy_v2(h);
}

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
  struct NotBound {
    Listener listener;
    std::string error;
  };
  std::map<std::string, NotBound> unbound;  // wanted by the snapshot served, not bound (yet)
  std::shared_ptr<tcp::acceptor> metrics_acceptor;
  BackendHealth health;  // which backends refuse the edge (thread-safe on its own)
  std::mutex probe_mu;   // one probe at a time
  std::vector<std::pair<std::string, Address>> to_probe;  // backends the snapshot brought (under `mu`)
  // Declared late, so destroyed early: the handlers it destroys (connections, their counts) still find
  // the counters, targets and locks above alive.
  asio::io_context io;
  // Forwarded connections. Destroyed first of all (its sockets and timers belong to `io`), after the
  // threads have stopped: it closes its connections and gives their counts back.
  std::unique_ptr<Relay> relay;

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

  std::optional<std::string> open_listener(Listener& l);  // defined below, beside apply()
  void start_listener(Listener l);

  std::shared_ptr<const EdgeConfig> snapshot() const {
    std::lock_guard lock(mu);
    return config;
  }

  // A TCP endpoint's listener: connections are accepted here, without Asio's sockets, and go straight
  // to the relay. The wait is re-armed before the accepts run, so a connection that arrives meanwhile
  // wakes it (with several threads another one may be running the reactor).
  void wait_accept(std::shared_ptr<tcp::acceptor> acceptor, std::shared_ptr<Slot> slot) {
    acceptor->async_wait(tcp::acceptor::wait_read, [this, acceptor, slot](boost::system::error_code ec) {
      if (ec || !acceptor->is_open()) return;
      wait_accept(acceptor, slot);
      accept_some(acceptor, slot);
    });
  }

  void accept_some(const std::shared_ptr<tcp::acceptor>& acceptor, const std::shared_ptr<Slot>& slot) {
    for (int i = 0; i < 64; ++i) {
      const int fd = ::accept4(acceptor->native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        forward_tcp(fd, slot->get());
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      // e.g. out of file descriptors: pause instead of spinning
      auto t = std::make_shared<asio::steady_timer>(acceptor->get_executor(), std::chrono::milliseconds(50));
      t->async_wait([this, t, acceptor, slot](boost::system::error_code e) {
        if (!e && acceptor->is_open()) accept_some(acceptor, slot);
      });
      return;
    }
    asio::post(acceptor->get_executor(), [this, acceptor, slot] {  // more waiting: after the edge's other work
      if (acceptor->is_open()) accept_some(acceptor, slot);
    });
  }

  // The edge's connection limit, counted from accept: false (and counted as refused) when it is full.
  bool admit(const EdgeConfig& cfg) {
    if (++counters.active <= cfg.limits.max_connections) return true;
    --counters.active;
    ++counters.refused_limit;
    return false;
  }

  // The target's limit and its backends: false (counted, and the edge's count given back) when refused.
  bool admit_to(const Target& target, TargetState& state) {
    const int open = ++state.active;
    if (target.max_connections > 0 && open > target.max_connections) {
      --state.active;
      --counters.active;
      ++counters.refused_limit;
      return false;
    }
    if (target.backends.empty()) {
      --state.active;
      --counters.active;
      ++counters.refused_no_backend;
      return false;
    }
    return true;
  }

  // Hands an admitted connection (its counts and its descriptor) to the relay, which connects to a
  // backend and copies both ways.
  void relay_to(int fd, const std::shared_ptr<const Plan>& plan, const Target& target, TargetState& state,
                const std::string& sni, std::vector<std::uint8_t> hello) {
    RelayJob job;
    job.client = fd;
    job.backends = &target.backends;
    job.first_backend = static_cast<std::size_t>(state.next++ % target.backends.size());
    if (target.proxy_v2) {  // the header whole, first, in the same write as what the client already sent
      job.first = proxy_header(fd, sni);
      if (job.first.empty()) {  // the client is gone already; never send the backend bytes without the header
        --state.active;
        --counters.active;
        ::close(fd);
        return;
      }
      job.first_uncounted = job.first.size();
    }
    job.first.insert(job.first.end(), hello.begin(), hello.end());
    job.connect_timeout = std::chrono::milliseconds(plan->config->limits.connect_timeout_ms);
    job.idle_timeout = std::chrono::milliseconds(plan->config->limits.idle_timeout_ms);
    job.active = &counters.active;
    job.target_active = &state.active;
    job.keep = plan;
    job.health = &health;
    job.target_id = &target.id;
    relay->add(std::move(job));
  }

  void forward_tcp(int fd, const std::shared_ptr<const Plan>& plan) {
    ++counters.accepted;
    if (!plan->target || !admit(*plan->config)) {  // (no target: the endpoint went away between accept and now)
      ::close(fd);
      return;
    }
    if (!admit_to(*plan->target, *plan->target_state)) {
      ::close(fd);
      return;
    }
    relay_to(fd, plan, *plan->target, *plan->target_state, "", {});  // (TCP_NODELAY: from the listener)
  }

  // The shared TLS listener: accepted with Asio, the ClientHello read to find the route, then the socket
  // is released to the relay.
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
      ++counters.accepted;
      auto executor = socket.get_executor();
      asio::co_spawn(executor, handle_tls(std::move(socket), slot->get()), asio::detached);
    }
  }

  awaitable<void> handle_tls(tcp::socket client, std::shared_ptr<const Plan> plan) {
    if (!admit(*plan->config)) co_return;
    bool handed_over = false;
    struct GiveBack {  // the edge's count, unless the relay took it over
      std::atomic<std::int64_t>& active;
      bool& handed_over;
      ~GiveBack() {
        if (!handed_over) --active;
      }
    } give_back{counters.active, handed_over};
    const auto& cfg = *plan->config;
    std::vector<std::uint8_t> hello;  // the bytes read to find the server name, sent on first
    auto got = co_await read_hello(client, cfg, hello);
    if (got.status != ClientHello::Status::ok) co_return;
    const Target* target = cfg.route_for(got.sni);
    if (!target) {
      ++counters.unknown_sni;
      co_return;
    }
    auto& state = *plan->route_states.at(target->id);
    if (!admit_to(*target, state)) {
      handed_over = true;  // admit_to gave the count back
      co_return;
    }
    boost::system::error_code ec;
    const int fd = client.release(ec);
    if (ec) {
      --state.active;
      co_return;
    }
    handed_over = true;
    relay_to(fd, plan, *target, state, got.sni, std::move(hello));
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
  auto& c = impl_->counters;
  impl_->relay = std::make_unique<Relay>(
      impl_->io, RelayCounters{&c.forwarded, &c.connect_failed, &c.idle_closed, &c.bytes_to_backend, &c.bytes_to_client},
      std::max(1, threads));
  auto work = std::make_shared<asio::executor_work_guard<asio::io_context::executor_type>>(impl_->io.get_executor());
  for (int i = 0; i < std::max(1, threads); ++i)
    impl_->threads.emplace_back([this, work] { impl_->io.run(); });
}

Edge::~Edge() {
  {
    std::lock_guard lock(impl_->mu);
    for (auto& [k, l] : impl_->listeners) asio::post(l.acceptor->get_executor(), [a = l.acceptor] { boost::system::error_code e; a->close(e); });
  }
  impl_->io.stop();
  for (auto& t : impl_->threads) t.join();
  // Only the pending handlers still hold sockets now; destroying the io_context (first) ends them.
  impl_->listeners.clear();
  impl_->metrics_acceptor.reset();
}

std::shared_ptr<const EdgeConfig> Edge::current() const { return impl_->snapshot(); }

// Binds and listens on `l.address` (not accepting yet); the error's text when it cannot.
std::optional<std::string> Edge::Impl::open_listener(Listener& l) {
  try {
    // With several threads a listener's handlers (and its close) run on a strand of their own.
    auto acc = threads.size() > 1 ? std::make_shared<tcp::acceptor>(asio::make_strand(io))
                                  : std::make_shared<tcp::acceptor>(io);
    const auto ep = to_endpoint(l.address);
    acc->open(ep.protocol());
    acc->set_option(tcp::acceptor::reuse_address(true));
    if (ep.address().is_v6()) acc->set_option(asio::ip::v6_only(true));  // IPv4 only where the add-on says
    // Accepted sockets inherit TCP_NODELAY from their listener on Linux: set once here, it costs no
    // system call per connection (small messages go out at once, as a proxy's must).
    acc->set_option(tcp::no_delay(true));
    // An env's address may not be configured on an interface: it is served through a local route for
    // the whole pool (AnyIP, docs/network.md), which needs a free bind.
    const int one = 1;
    if (ep.address().is_v6()) ::setsockopt(acc->native_handle(), IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one);
    else ::setsockopt(acc->native_handle(), IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
    acc->bind(ep);
    acc->listen(asio::socket_base::max_listen_connections);
    acc->non_blocking(true);
    l.acceptor = acc;
    return std::nullopt;
  } catch (const boost::system::system_error& e) {
    return e.code().message();
  }
}

// A bound listener joins the served set (with `mu` held) and starts accepting.
void Edge::Impl::start_listener(Listener l) {
  l.slot->plan = plan_for(l, config);
  listeners[l.key] = l;
  if (l.tls) asio::co_spawn(l.acceptor->get_executor(), accept_loop(l.acceptor, l.slot), asio::detached);
  else asio::post(l.acceptor->get_executor(), [this, a = l.acceptor, slot = l.slot] { wait_accept(a, slot); });
}

Edge::Applied Edge::apply(std::shared_ptr<const EdgeConfig> config) {
  auto& im = *impl_;
  std::map<std::string, Impl::Listener> wanted;
  for (const auto& e : config->endpoints)
    for (const auto& a : e.listen) wanted["tcp " + a.str()] = {"tcp " + a.str(), a, false, e.id, nullptr};
  for (const auto& a : config->tls_listen) wanted["tls " + a.str()] = {"tls " + a.str(), a, true, "", nullptr};

  Applied out;
  std::vector<std::future<void>> closing;  // removed listeners, closed on their own executor
  std::unique_lock lock(im.mu);
  // 1. Bind what is new. What cannot be bound is left out (and listed), the rest goes ahead.
  std::vector<std::string> opened;
  im.unbound.clear();
  for (auto& [key, l] : wanted) {
    if (im.listeners.count(key)) continue;
    if (auto error = im.open_listener(l)) {
      im.unbound[key] = {l, *error};
      out.unbound.push_back({l.address, l.tls, *error});
    } else {
      opened.push_back(key);
    }
  }
  // 2. Swap: new listeners start accepting, unchanged ones keep their socket, removed ones stop accepting
  // (their connections finish on the snapshot they started with).
  im.config = config;
  im.to_probe = im.health.keep_only(*config);
  for (auto& [key, l] : im.listeners)  // kept listeners serve the new snapshot from their next connection
    if (auto w = wanted.find(key); w != wanted.end()) {
      l.endpoint_id = w->second.endpoint_id;  // the port may now belong to another endpoint id
      std::lock_guard slot_lock(l.slot->mu);
      l.slot->plan = im.plan_for(l, config);
    }
  for (auto it = im.listeners.begin(); it != im.listeners.end();) {
    auto w = wanted.find(it->first);
    if (w == wanted.end()) {
      auto closed = std::make_shared<std::promise<void>>();
      closing.push_back(closed->get_future());
      asio::post(it->second.acceptor->get_executor(), [a = it->second.acceptor, closed] {
        boost::system::error_code e;
        a->close(e);
        closed->set_value();
      });
      ++out.closed;
      it = im.listeners.erase(it);
    } else {
      ++out.kept;
      ++it;
    }
  }
  for (const auto& key : opened) {
    im.start_listener(wanted[key]);
    ++out.opened;
  }
  lock.unlock();
  // A removed listener refuses connections once apply() returns (so a status report after it is true),
  // unless its thread is stuck: the wait is bounded. (apply() runs outside the edge's threads.)
  for (auto& f : closing) f.wait_for(std::chrono::seconds(2));
  return out;
}

int Edge::probe_new_backends(std::chrono::milliseconds timeout) {
  auto& im = *impl_;
  std::lock_guard probing(im.probe_mu);
  std::vector<std::pair<std::string, Address>> pairs;
  std::shared_ptr<const EdgeConfig> config;
  {
    std::lock_guard lock(im.mu);
    pairs.swap(im.to_probe);
    config = im.config;
  }
  if (!pairs.empty()) im.health.probe(pairs, *config, timeout);
  return static_cast<int>(pairs.size());
}

int Edge::probe_unreachable(std::chrono::milliseconds timeout) {
  auto& im = *impl_;
  std::vector<std::pair<std::string, Address>> pairs;
  for (auto& f : im.health.failing()) pairs.emplace_back(std::move(f.target), std::move(f.backend));
  if (pairs.empty()) return 0;
  std::lock_guard probing(im.probe_mu);
  im.health.probe(pairs, *im.snapshot(), timeout);
  return static_cast<int>(pairs.size());
}

std::vector<Edge::Unreachable> Edge::unreachable() const {
  std::vector<Unreachable> out;
  for (auto& f : impl_->health.failing()) out.push_back({std::move(f.target), std::move(f.backend), std::move(f.error), f.failures});
  return out;
}

std::vector<Edge::Unbound> Edge::unbound() const {
  std::lock_guard lock(impl_->mu);
  std::vector<Unbound> out;
  for (const auto& [key, u] : impl_->unbound) out.push_back({u.listener.address, u.listener.tls, u.error});
  return out;
}

int Edge::retry_unbound() {
  auto& im = *impl_;
  std::lock_guard lock(im.mu);
  int bound = 0;
  for (auto it = im.unbound.begin(); it != im.unbound.end();) {
    auto l = it->second.listener;
    if (auto error = im.open_listener(l)) {
      it->second.error = *error;
      ++it;
      continue;
    }
    im.start_listener(l);
    ++bound;
    it = im.unbound.erase(it);
  }
  return bound;
}

std::string Edge::metrics_text() const {
  const auto& c = impl_->counters;
  const auto cfg = impl_->snapshot();
  std::string out;
  auto metric = [&](const char* name, const char* help, const char* type, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
  };
  metric("platform_edge_config_version", "The version of the snapshot being served.", "gauge", cfg->version);
  metric("platform_edge_listeners_unbound",
         "Listeners the snapshot wants that could not be bound (the address and port are taken, or not on this host).",
         "gauge", unbound().size());
  metric("platform_edge_backends_unreachable",
         "Backends (per endpoint or route) whose last connect from the edge failed: refused, unreachable or timed out.",
         "gauge", impl_->health.failing().size());
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

  // Per endpoint and route of the snapshot being served: which one is busy, and which has no backend.
  struct Row {
    const Target* target;
    const char* kind;
    std::shared_ptr<TargetState> state;
  };
  std::vector<Row> rows;
  {
    std::lock_guard lock(impl_->mu);
    auto add = [&](const Target& t, const char* kind) {
      auto it = impl_->targets.find(t.id);
      rows.push_back({&t, kind, it == impl_->targets.end() ? nullptr : it->second});
    };
    for (const auto& e : cfg->endpoints) add(e, "endpoint");
    for (const auto& r : cfg->routes) add(r, "route");
  }
  auto label = [](const std::string& v) {  // Prometheus label value escaping
    std::string o;
    for (char ch : v) o += ch == '\\' ? std::string("\\\\") : ch == '"' ? std::string("\\\"") : ch == '\n' ? std::string("\\n") : std::string(1, ch);
    return o;
  };
  auto per_target = [&](const char* name, const char* help, const char* type, auto value_of) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (const auto& r : rows)
      out += fmt::format("{}{{target=\"{}\",kind=\"{}\",id=\"{}\"}} {}\n", name, label(r.target->name), r.kind,
                         label(r.target->id), value_of(r));
  };
  per_target("platform_edge_target_connections_active", "Client connections open now, per endpoint or route.", "gauge",
             [](const Row& r) { return r.state ? std::int64_t{r.state->active.load()} : std::int64_t{0}; });
  per_target("platform_edge_target_connections_total", "Connections admitted, per endpoint or route (then forwarded, or closed when no backend answered).",
             "counter", [](const Row& r) { return r.state ? r.state->next.load() : std::uint64_t{0}; });
  per_target("platform_edge_target_backends", "Healthy backends in the snapshot, per endpoint or route.", "gauge",
             [](const Row& r) { return r.target->backends.size(); });
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
