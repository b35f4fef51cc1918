#include "ingress/backend_health.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "ingress/proxy_v2.h"
#include "ingress/relay.h"

namespace platform::ingress {

namespace {
std::string key_of(const Address& a) { return a.str(); }
}  // namespace

void BackendHealth::failed(const std::string& target, const Address& backend, int err) {
  std::lock_guard lock(mu_);
  failed_locked(target, backend, err);
}

void BackendHealth::failed_locked(const std::string& target, const Address& backend, int err) {
  // Only pairs of the snapshot served (keep_only() made them): a connection still on an older snapshot,
  // or a probe that outlived its snapshot, says nothing about what is served now.
  auto it = states_.find({target, key_of(backend)});
  if (it == states_.end()) return;
  auto& s = it->second;
  s.tried = true;
  if (!s.failing) ++failing_;
  s.failing = true;
  s.error = std::strerror(err);
  ++s.failures;
}

void BackendHealth::succeeded(const std::string& target, const Address& backend) {
  if (failing_.load(std::memory_order_relaxed) == 0) return;  // the common case: no lock
  std::lock_guard lock(mu_);
  succeeded_locked(target, backend);
}

std::vector<BackendHealth::Failing> BackendHealth::failing() const {
  std::vector<Failing> out;
  std::lock_guard lock(mu_);
  for (const auto& [key, s] : states_)
    if (s.failing) out.push_back({key.first, s.address, s.error, s.failures});
  return out;
}

std::vector<std::pair<std::string, Address>> BackendHealth::keep_only(const EdgeConfig& config) {
  std::vector<std::pair<std::string, Address>> untried;
  std::set<std::pair<std::string, std::string>> wanted;
  auto add = [&](const Target& t) {
    for (const auto& b : t.backends) wanted.insert({t.id, key_of(b)});
  };
  for (const auto& e : config.endpoints) add(e);
  for (const auto& r : config.routes) add(r);
  std::lock_guard lock(mu_);
  for (auto it = states_.begin(); it != states_.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    if (it->second.failing) --failing_;
    it = states_.erase(it);
  }
  auto collect = [&](const Target& t) {
    for (const auto& b : t.backends) {
      auto& s = states_[{t.id, key_of(b)}];
      s.address = b;
      if (!s.tried) untried.emplace_back(t.id, b);
    }
  };
  for (const auto& e : config.endpoints) collect(e);
  for (const auto& r : config.routes) collect(r);
  return untried;
}

void BackendHealth::probe(const std::vector<std::pair<std::string, Address>>& pairs, const EdgeConfig& config,
                          std::chrono::milliseconds timeout) {
  std::set<std::string> proxied;
  for (const auto& e : config.endpoints)
    if (e.proxy_v2) proxied.insert(e.id);
  for (const auto& r : config.routes)
    if (r.proxy_v2) proxied.insert(r.id);
  ProxyHeader local;
  local.local = true;
  const auto local_header = encode_proxy_v2(local);

  struct Attempt {
    const std::pair<std::string, Address>* pair;
    int fd = -1;
    int err = 0;  // 0: connected
    bool done = false;
  };
  std::vector<Attempt> attempts;
  for (const auto& p : pairs) {
    Attempt a{&p};
    sockaddr_storage ss;
    socklen_t len = 0;
    if (!to_sockaddr(p.second, ss, len)) {
      a.err = EINVAL;
      a.done = true;
    } else if ((a.fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
      a.err = errno;
      a.done = true;
    } else if (::connect(a.fd, reinterpret_cast<const sockaddr*>(&ss), len) == 0) {
      a.done = true;
    } else if (errno != EINPROGRESS) {
      a.err = errno;
      a.done = true;
    }
    attempts.push_back(a);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<Attempt*> waiting;
    for (auto& a : attempts)
      if (!a.done) {
        fds.push_back({a.fd, POLLOUT, 0});
        waiting.push_back(&a);
      }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (fds.empty() || left.count() <= 0) break;
    if (::poll(fds.data(), fds.size(), static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      int err = 0;
      socklen_t l = sizeof err;
      ::getsockopt(fds[i].fd, SOL_SOCKET, SO_ERROR, &err, &l);
      waiting[i]->err = err;
      waiting[i]->done = true;
    }
  }
  for (auto& a : attempts) {
    if (!a.done) a.err = ETIMEDOUT;  // no answer within the timeout
    if (a.fd >= 0) {
      if (a.err == 0 && proxied.count(a.pair->first))
        (void)!::send(a.fd, local_header.data(), local_header.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ::close(a.fd);
    }
  }
  std::lock_guard lock(mu_);
  for (const auto& a : attempts) {
    const auto& [target, backend] = *a.pair;
    if (a.err != 0) {
      failed_locked(target, backend, a.err);
    } else if (auto it = states_.find({target, key_of(backend)}); it != states_.end()) {
      it->second.tried = true;
      succeeded_locked(target, backend);
    }
  }
}

void BackendHealth::succeeded_locked(const std::string& target, const Address& backend) {
  auto it = states_.find({target, key_of(backend)});
  if (it == states_.end() || !it->second.failing) return;
  it->second.failing = false;
  it->second.failures = 0;
  --failing_;
}

}  // namespace platform::ingress
