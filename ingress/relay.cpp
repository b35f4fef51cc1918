#include "ingress/relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
// (after io_context.hpp, which they need)
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <system_error>

#include "ingress/backend_health.h"

namespace platform::ingress {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kSmall = 16 * 1024;  // most connections are small and short
// A direction whose read filled the small buffer is bulk: its reads get this much. Each byte is copied
// into it by recv() and out by send(), so it pays to stay within the core's L1 data cache (32-48 KiB):
// 32 KiB moved 1.2x HAProxy's bulk rate where 64 and 128 KiB moved 0.84-0.93x (docs/edge.md).
constexpr std::size_t kBig = 32 * 1024;
constexpr int kBatch = 64;                 // events per epoll_wait
constexpr int kReadsPerTurn = 8;           // per direction, before the other connections get their turn
constexpr int kRoundsPerRun = 16;          // then the io_context's other handlers get theirs

// One direction: bytes read from one socket and not yet written to the other.
struct Flow {
  std::unique_ptr<std::uint8_t[]> buf;
  std::size_t cap = 0, begin = 0, end = 0;
  std::size_t uncounted = 0;  // leading bytes that are not payload (the PROXY header)
  bool grow = false;          // a read filled the small buffer: the next read gets the big one
  bool eof = false;           // the source sent its FIN
  bool shut = false;          // and it was passed on (shutdown(SHUT_WR) on the destination)
  std::size_t pending() const { return end - begin; }
};

struct Conn;
struct Side {  // what an epoll event points at
  Conn* conn = nullptr;
  int index = 0;  // 0: the client, 1: the backend
};

struct Conn {
  int fd[2] = {-1, -1};
  Side side[2];
  Flow flow[2];                        // flow[i] reads fd[i] and writes fd[1 - i]
  bool readable[2] = {false, false};   // may hold bytes (or a FIN) not read yet
  bool writable[2] = {true, true};
  bool hangup[2] = {false, false};     // an event said FIN or hang-up: read until 0, a short read proves nothing
  bool connecting = true, dead = false, queued = false;
  std::size_t attempt = 0;             // which backend, counting from job.first_backend
  Clock::time_point last, connect_deadline;
  RelayJob job;
  Conn* prev = nullptr;
  Conn* next = nullptr;
};

bool would_block() { return errno == EAGAIN || errno == EWOULDBLOCK; }
// After a failed recv() or send(): the connection is over in the kernel (reset, or timed out), so
// closing it sends nothing.
bool connection_over() { return errno == ECONNRESET || errno == EPIPE || errno == ETIMEDOUT; }

// The shard's wait in Asio's reactor for its epoll set, written as a reactor operation of our own (the
// one Boost.Asio detail interface this uses; Debian's Boost 1.81 is pinned). Its "perform" step is the
// inner epoll_wait, run by the reactor under the descriptor's lock: so the wait can be started
// speculatively, like Asio's own reads, and re-arming it costs no epoll_ctl (a plain async_wait does
// one on every start), while an event can still never be missed between two waits.
struct ReadyOp : asio::detail::reactor_op {
  Relay::Shard* shard;
  int epfd;
  int n = 0;
  epoll_event events[kBatch];
  ReadyOp(Relay::Shard* s, int fd) : reactor_op(boost::system::error_code(), &do_perform, &do_complete), shard(s), epfd(fd) {}
  static status do_perform(reactor_op* base) {
    auto* op = static_cast<ReadyOp*>(base);
    op->n = ::epoll_wait(op->epfd, op->events, kBatch, 0);
    if (op->n <= 0) {
      op->n = 0;
      return not_done;  // nothing (yet): stays queued for the next readiness
    }
    return op->n < kBatch ? done_and_exhausted : done;
  }
  // Owner null: the io_context is being destroyed; aborted: the shard has gone. Either way the
  // operation frees itself and touches nothing else.
  static void do_complete(void* owner, asio::detail::operation* base, const boost::system::error_code&, std::size_t);
};

// An operation carried by a posted continuation; freed if that is destroyed without running.
struct OpDeleter {
  void operator()(ReadyOp* op) const { delete op; }
};
using HeldOp = std::unique_ptr<ReadyOp, OpDeleter>;

}  // namespace

bool to_sockaddr(const Address& a, sockaddr_storage& ss, socklen_t& len) {
  std::memset(&ss, 0, sizeof ss);
  if (a.v6()) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(a.port);
    len = sizeof *s6;
    return ::inet_pton(AF_INET6, a.ip.c_str(), &s6->sin6_addr) == 1;
  }
  auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
  s4->sin_family = AF_INET;
  s4->sin_port = htons(a.port);
  len = sizeof *s4;
  return ::inet_pton(AF_INET, a.ip.c_str(), &s4->sin_addr) == 1;
}

// One loop: its epoll set, its connections, its timer. Everything under `mu`; handlers of one shard may
// run on any of the edge's threads, one at a time.
struct Relay::Shard {
  asio::io_context& io;
  RelayCounters counters;
  std::mutex mu;
  int epfd;
  asio::detail::reactor& reactor;
  asio::detail::reactor::per_descriptor_data registration = nullptr;  // the epoll set's, in Asio's reactor
  asio::steady_timer timer;              // the earliest connect or idle deadline
  Clock::time_point timer_at = Clock::time_point::max();
  Conn* head = nullptr;
  std::vector<Conn*> again, turn;        // connections with work left after their turn
  std::vector<Conn*> graveyard;          // ended in this round; freed after it (events may still point at them)
  Clock::time_point now;
  bool added = false;                    // a socket joined the set in this round: its first event is due

  Shard(asio::io_context& context, RelayCounters c)
      : io(context),
        counters(c),
        epfd(::epoll_create1(EPOLL_CLOEXEC)),
        reactor(asio::use_service<asio::detail::reactor>(context)),
        timer(context) {
    if (epfd < 0) throw std::system_error(errno, std::generic_category(), "edge: epoll_create1");
    if (reactor.register_descriptor(epfd, registration) != 0) {
      const int e = errno;
      reactor.cleanup_descriptor_data(registration);
      ::close(epfd);
      throw std::system_error(e, std::generic_category(), "edge: registering the relay's epoll set");
    }
    wait(HeldOp(new ReadyOp(this, epfd)));
  }

  ~Shard() {  // the edge is stopping: every connection is closed, as the sockets' owner would
    for (Conn* c = head; c;) {
      Conn* n = c->next;
      kill(c);
      c = n;
    }
    bury(true);
    reactor.deregister_descriptor(epfd, registration, true);  // a waiting operation is aborted, frees itself
    ::close(epfd);
    reactor.cleanup_descriptor_data(registration);
  }

  // One operation at a time: started again only when the events it brought have been handled.
  void wait(HeldOp op) {
    op->ec_ = {};
    op->n = 0;
    reactor.start_op(asio::detail::reactor::read_op, epfd, registration, op.release(), false, true);
  }

  // The reactor found events (in `op`): handle them, and whatever arrives while doing so.
  void ready(HeldOp op) {
    std::lock_guard lock(mu);
    now = Clock::now();
    int n = op->n;
    for (int round = 0; round < kRoundsPerRun; ++round) {
      added = false;
      if (round > 0) n = ::epoll_wait(epfd, op->events, kBatch, 0);
      for (int i = 0; i < n; ++i) {
        auto* side = static_cast<Side*>(op->events[i].data.ptr);
        handle(side->conn, side->index, op->events[i].events);
      }
      turn.swap(again);
      for (Conn* c : turn) {
        c->queued = false;
        if (!c->dead) progress(c);
      }
      turn.clear();
      bury();
      if (n < kBatch && again.empty() && !added) return wait(std::move(op));
    }
    // Still busy: let the rest of the edge run, then carry on.
    op->n = 0;
    asio::post(io, [this, held = std::move(op)]() mutable { ready(std::move(held)); });
  }

  void handle(Conn* c, int i, std::uint32_t ev) {
    if (c->dead) return;
    if (i == 1 && c->connecting) return connected(c, ev);
    if (ev & EPOLLERR) return abort(c, i);  // a reset or an error: passed on as a reset
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) c->readable[i] = true;
    if (ev & (EPOLLRDHUP | EPOLLHUP)) c->hangup[i] = true;
    if (ev & EPOLLOUT) c->writable[i] = true;
    progress(c);
  }

  void progress(Conn* c) {
    for (int i = 0; i < 2 && !c->dead; ++i) move(c, i);
    if (!c->dead && c->flow[0].shut && c->flow[1].shut) kill(c);  // both directions ended cleanly
  }

  // Copies direction i as far as the sockets allow.
  void move(Conn* c, int i) {
    Flow& f = c->flow[i];
    const int from = i, to = 1 - i;
    for (int reads = 0;;) {
      if (f.pending() > 0) {
        if (!c->writable[to]) return;
        const ssize_t n = ::send(c->fd[to], f.buf.get() + f.begin, f.pending(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (would_block()) {
            c->writable[to] = false;  // EPOLLOUT resumes
            return;
          }
          return abort(c, connection_over() ? to : -1);
        }
        count(i, f, static_cast<std::size_t>(n));
        f.begin += static_cast<std::size_t>(n);
        c->last = now;
        if (f.pending() > 0) {  // a partial write: the socket is full
          c->writable[to] = false;
          return;
        }
        f.begin = f.end = 0;
      }
      if (f.eof) {
        if (!f.shut) {
          ::shutdown(c->fd[to], SHUT_WR);  // half-close forwarded
          f.shut = true;
        }
        return;
      }
      if (!c->readable[from]) return;
      if (reads == kReadsPerTurn) {  // a busy direction: the others get their turn first
        if (!c->queued) {
          c->queued = true;
          again.push_back(c);
        }
        return;
      }
      if (!f.buf || (f.grow && f.cap < kBig)) {
        f.cap = f.buf ? kBig : kSmall;
        f.buf = std::make_unique_for_overwrite<std::uint8_t[]>(f.cap);
        f.grow = false;
      }
      const ssize_t n = ::recv(c->fd[from], f.buf.get(), f.cap, MSG_DONTWAIT);
      ++reads;
      if (n > 0) {
        f.end = static_cast<std::size_t>(n);
        c->last = now;
        if (f.end == f.cap) f.grow = f.cap < kBig;
        // A short read emptied the socket: what comes next (bytes, a FIN, a reset) raises a new event.
        else if (!c->hangup[from]) c->readable[from] = false;
        continue;
      }
      if (n == 0) {
        f.eof = true;
        c->readable[from] = false;
        continue;
      }
      if (errno == EINTR) continue;
      if (would_block()) {
        c->readable[from] = false;
        return;
      }
      return abort(c, connection_over() ? from : -1);
    }
  }

  void count(int i, Flow& f, std::size_t n) {
    const std::size_t header = std::min(f.uncounted, n);
    f.uncounted -= header;
    if (n > header) *(i == 0 ? counters.to_backend : counters.to_client) += n - header;
  }

  // The backend socket's event while it connects.
  void connected(Conn* c, std::uint32_t ev) {
    if (ev & (EPOLLERR | EPOLLHUP)) {  // refused, unreachable or reset
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &len);
      return next_backend(c, err ? err : ECONNRESET);
    }
    if (!(ev & EPOLLOUT)) return;  // (writable means connected; an error would have said so)
    if (ev & EPOLLIN) c->readable[1] = true;  // a server that speaks first
    if (ev & EPOLLRDHUP) c->hangup[1] = true;
    established(c);
  }

  // The backend being tried (or last tried) for `c`.
  static const Address& backend_of(const Conn* c) {
    const auto& backends = *c->job.backends;
    return backends[(c->job.first_backend + c->attempt) % backends.size()];
  }

  // The attempt on the current backend failed with `err`: recorded for status, then the next one.
  void next_backend(Conn* c, int err) {
    if (c->job.health) c->job.health->failed(*c->job.target_id, backend_of(c), err);
    ::close(c->fd[1]);
    c->fd[1] = -1;
    ++c->attempt;
    connect_next(c);
  }

  // The backend took the connection: from now on bytes go both ways, the client's socket in the set too.
  void established(Conn* c) {
    c->connecting = false;
    ++*counters.forwarded;
    if (c->job.health) c->job.health->succeeded(*c->job.target_id, backend_of(c));
    epoll_event e{};
    e.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    e.data.ptr = &c->side[0];
    if (::epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd[0], &e) != 0) return abort(c);
    added = true;
    c->writable[1] = true;
    c->last = now;
    progress(c);
  }

  // Right after connect(): on loopback, and often nearby, the handshake is over by the time connect()
  // returns. So, as HAProxy does, go on at once instead of waiting for the backend's EPOLLOUT: read what
  // the client has sent (it usually has, by the time it is accepted) and send it with what goes first.
  // A send that would block means still connecting (EPOLLOUT says when); one that fails means the
  // backend refused (the next one is tried, the bytes kept). A client that has sent nothing yet (or a
  // server that speaks first) waits for EPOLLOUT as before. Saves a turn of the loop, and its system
  // calls, on every connection.
  void early(Conn* c) {
    Flow& f = c->flow[0];
    if (f.pending() == 0 && !f.eof) {
      if (!f.buf) {
        f.cap = kSmall;
        f.buf = std::make_unique_for_overwrite<std::uint8_t[]>(f.cap);
      }
      const ssize_t n = ::recv(c->fd[0], f.buf.get(), f.cap, MSG_DONTWAIT);
      if (n > 0) {
        f.begin = 0;
        f.end = static_cast<std::size_t>(n);
        if (f.end == f.cap) {  // more may wait: read on once connected (its socket joins the set then)
          f.grow = true;
          c->readable[0] = true;
        }
      } else if (n == 0) {
        f.eof = true;  // passed on as a half-close once connected
      } else if (!would_block() && errno != EINTR) {
        return abort(c, connection_over() ? 0 : -1);  // the client reset already
      }
    }
    if (f.pending() == 0) return;
    const ssize_t n = ::send(c->fd[1], f.buf.get() + f.begin, f.pending(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (would_block() || errno == EINTR) return;  // still connecting
      return next_backend(c, errno);
    }
    count(0, f, static_cast<std::size_t>(n));
    f.begin += static_cast<std::size_t>(n);
    if (f.pending() == 0) f.begin = f.end = 0;
    established(c);
  }

  void connect_next(Conn* c) {
    const auto& backends = *c->job.backends;
    while (c->attempt < backends.size()) {
      const Address& a = backend_of(c);
      sockaddr_storage ss;
      socklen_t len = 0;
      if (!to_sockaddr(a, ss, len)) {
        ++c->attempt;
        continue;
      }
      const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) break;  // out of descriptors: the next backend would fail alike
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (::connect(fd, reinterpret_cast<const sockaddr*>(&ss), len) == 0 || errno == EINPROGRESS) {
        epoll_event e{};
        e.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        e.data.ptr = &c->side[1];
        if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) == 0) {
          c->fd[1] = fd;
          c->connect_deadline = now + c->job.connect_timeout;
          arm_timer(c->connect_deadline);
          added = true;
          return early(c);
        }
      } else if (c->job.health) {
        c->job.health->failed(*c->job.target_id, a, errno);
      }
      ::close(fd);
      ++c->attempt;
    }
    ++*counters.connect_failed;
    kill(c);  // no backend answered: the client's connection is closed
  }

  // A reset or an error on one side ends both with a reset, as the peer would have seen it without the
  // edge, and leaves no TIME_WAIT here. `failed`: the side whose socket reported it (it is over already:
  // only the other needs SO_LINGER 0), or -1.
  void abort(Conn* c, int failed = -1) {
    const linger l{1, 0};
    for (int i = 0; i < 2; ++i)
      if (c->fd[i] >= 0 && i != failed) ::setsockopt(c->fd[i], SOL_SOCKET, SO_LINGER, &l, sizeof l);
    kill(c);
  }

  void kill(Conn* c) {
    c->dead = true;
    for (int& fd : c->fd)
      if (fd >= 0) ::close(std::exchange(fd, -1));
    if (c->job.active) --*c->job.active;
    if (c->job.target_active) --*c->job.target_active;
    c->job.keep.reset();
    if (c->prev) c->prev->next = c->next;
    else head = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = nullptr;
    graveyard.push_back(c);
  }

  // Frees the connections that ended, except those still on the `again` list (freed once it has seen
  // them dead); `all` at destruction.
  void bury(bool all = false) {
    std::erase_if(graveyard, [all](Conn* c) {
      if (c->queued && !all) return false;
      delete c;
      return true;
    });
  }

  void arm_timer(Clock::time_point at) {
    if (at >= timer_at) return;
    timer_at = at;
    timer.expires_at(at);
    timer.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      std::lock_guard lock(mu);
      sweep();
    });
  }

  // Connect timeouts (the next backend) and idle connections (closed and counted).
  void sweep() {
    now = Clock::now();
    timer_at = Clock::time_point::max();
    auto next = Clock::time_point::max();
    for (Conn* c = head; c;) {
      Conn* after = c->next;
      if (c->connecting) {
        if (now >= c->connect_deadline) {
          next_backend(c, ETIMEDOUT);
        } else {
          next = std::min(next, c->connect_deadline);
        }
      } else if (const auto idle_at = c->last + c->job.idle_timeout; now >= idle_at) {
        ++*counters.idle_closed;
        kill(c);
      } else {
        next = std::min(next, idle_at);
      }
      c = after;
    }
    bury();
    if (next != Clock::time_point::max()) arm_timer(std::max(next, now + std::chrono::milliseconds(10)));
  }

  void add(RelayJob job) {
    std::lock_guard lock(mu);
    now = Clock::now();
    auto* c = new Conn;
    c->side[0] = {c, 0};
    c->side[1] = {c, 1};
    c->fd[0] = job.client;
    c->job = std::move(job);
    if (!c->job.first.empty()) {  // the PROXY header and the hello go first, in one write
      Flow& f = c->flow[0];
      f.cap = std::max(kSmall, c->job.first.size());
      f.buf = std::make_unique_for_overwrite<std::uint8_t[]>(f.cap);
      std::memcpy(f.buf.get(), c->job.first.data(), c->job.first.size());
      f.end = c->job.first.size();
      f.uncounted = c->job.first_uncounted;
      std::vector<std::uint8_t>().swap(c->job.first);
    }
    c->last = now;
    c->next = head;
    if (head) head->prev = c;
    head = c;
    arm_timer(now + c->job.idle_timeout);  // the idle limit may be shorter than the connect timeout
    connect_next(c);
    bury();
  }
};

void ReadyOp::do_complete(void* owner, asio::detail::operation* base, const boost::system::error_code&, std::size_t) {
  HeldOp op(static_cast<ReadyOp*>(base));
  if (!owner || op->ec_) return;
  Relay::Shard* shard = op->shard;
  shard->ready(std::move(op));
}

Relay::Relay(asio::io_context& io, RelayCounters counters, int shards) {
  for (int i = 0; i < std::max(1, shards); ++i) shards_.push_back(std::make_unique<Shard>(io, counters));
}

Relay::~Relay() = default;

void Relay::add(RelayJob job) { shards_[next_++ % shards_.size()]->add(std::move(job)); }

}  // namespace platform::ingress
