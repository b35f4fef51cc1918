#include "agent/health.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace platform::agent {
namespace {

using Clock = std::chrono::steady_clock;

// Connects to address:port and, for http, sends a GET and reads the status line; all before deadline.
ProbeResult run_probe(const manifest::HealthCheck& c, const std::string& address, Clock::time_point deadline) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return {false, std::string("socket: ") + std::strerror(errno), {}};
  auto left_ms = [&] {
    return static_cast<int>(std::max<long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()));
  };
  auto done = [&](bool ok, std::string error) {
    ::close(fd);
    return ProbeResult{ok, std::move(error), {}};
  };
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(c.port));
  if (::inet_pton(AF_INET, address.c_str(), &a.sin_addr) != 1) return done(false, "bad probe address " + address);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS)
    return done(false, fmt::format("cannot connect to port {}: {}", c.port, std::strerror(errno)));
  pollfd p{fd, POLLOUT, 0};
  if (::poll(&p, 1, left_ms()) != 1) return done(false, fmt::format("port {} did not accept within the timeout", c.port));
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return done(false, fmt::format("cannot connect to port {}: {}", c.port, std::strerror(err)));
  if (c.type == "tcp") return done(true, "");
  const auto req = fmt::format("GET {} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: platform-health\r\nConnection: close\r\n\r\n",
                               c.path);
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
    return done(false, fmt::format("cannot send the request to port {}", c.port));
  std::string head;
  while (head.find("\r\n") == std::string::npos && head.size() < 1024) {
    pollfd in{fd, POLLIN, 0};
    if (::poll(&in, 1, left_ms()) != 1) return done(false, fmt::format("no answer from {} within the timeout", c.path));
    char buf[512];
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    head.append(buf, static_cast<std::size_t>(n));
  }
  int status = 0;
  if (head.rfind("HTTP/1.", 0) != 0 || std::sscanf(head.c_str() + 8, " %d", &status) != 1)
    return done(false, fmt::format("the answer to GET {} is not HTTP", c.path));
  if (status < 200 || status >= 400) return done(false, fmt::format("HTTP {} from {}", status, c.path));
  return done(true, "");
}

}  // namespace

ProbeResult probe(const manifest::HealthCheck& check, const ProbeTarget& target) {
  const auto pid = target.pid;
  const auto start = Clock::now();
  if (check.type == "exec") return {false, "exec checks run through the instance's runtime (Runtime::exec), not here", {}};
  ProbeResult r;
  // setns changes the network namespace of the calling thread only: probe from a thread of our own.
  std::thread t([&] {
    int ns = ::open(fmt::format("/proc/{}/ns/net", pid).c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) {
      r = {false, fmt::format("cannot enter the instance's network (process {}): {}", pid, std::strerror(errno)), {}};
      if (ns >= 0) ::close(ns);
      return;
    }
    ::close(ns);
    r = run_probe(check, target.address, start + std::chrono::milliseconds(check.timeout_ms));
  });
  t.join();
  r.took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  return r;
}

const std::string& HealthTracker::record(const ProbeResult& r, std::chrono::milliseconds since_start) {
  if (r.ok) {
    failures_ = 0;
    state_ = "healthy";
    last_error_.clear();
    return state_;
  }
  last_error_ = r.error;
  // Within the grace period a failing probe is expected (the process is starting) and does not count.
  if (since_start < std::chrono::milliseconds(check_.grace_ms) && state_ == "starting") return state_;
  if (++failures_ >= check_.threshold) state_ = "unhealthy";
  return state_;
}

}  // namespace platform::agent
