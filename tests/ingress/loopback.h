#pragma once
// Loopback helpers for the edge's tests: a TCP echo server on 127.0.0.1 that keeps the SHA-256 of what
// each connection sent, blocking clients for IPv4 and IPv6, and ports free on both families below the
// ephemeral range.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace platform::ingress::testing {

inline std::string sha256(const std::string& data) {
  unsigned char md[32];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned i = 0; i < n; ++i) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

inline int connect_to(const std::string& ip, int port) {
  const bool v6 = ip.find(':') != std::string::npos;
  int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET, ip.c_str(), &a->sin_addr);
    len = sizeof *a;
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{20, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// A listening socket on 127.0.0.1 at a port the kernel picks; sets *port.
inline int listen_on_loopback(int* port, int backlog = 1024) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  ::listen(fd, backlog);
  return fd;
}

// A TCP echo server on 127.0.0.1: echoes every byte, half-closes after the peer's EOF, and keeps the
// SHA-256 of what it received per connection.
class EchoServer {
 public:
  EchoServer() {
    fd_ = listen_on_loopback(&port_);
    thread_ = std::thread([this] {
      for (;;) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        std::lock_guard lock(mu_);
        open_.push_back(c);
        connections_.emplace_back([this, c] { serve(c); });
      }
    });
  }
  // Ends every connection still open and waits for its thread: none outlives the server.
  ~EchoServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      for (int c : open_) ::shutdown(c, SHUT_RDWR);
      threads.swap(connections_);
    }
    for (auto& t : threads) t.join();
  }
  int port() const { return port_; }
  std::vector<std::string> digests() {
    std::lock_guard lock(mu_);
    return digests_;
  }

 private:
  void serve(int c) {
    std::string got;
    char buf[65536];
    for (ssize_t n; (n = ::recv(c, buf, sizeof buf, 0)) > 0;) {
      got.append(buf, static_cast<std::size_t>(n));
      for (ssize_t off = 0; off < n;) {
        auto w = ::send(c, buf + off, static_cast<std::size_t>(n - off), MSG_NOSIGNAL);
        if (w <= 0) break;
        off += w;
      }
    }
    ::shutdown(c, SHUT_WR);
    std::lock_guard lock(mu_);
    digests_.push_back(sha256(got));
    open_.erase(std::find(open_.begin(), open_.end(), c));
    ::close(c);
  }

  int fd_ = -1, port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> digests_;
  std::vector<int> open_;                 // connection sockets not yet closed
  std::vector<std::thread> connections_;  // one per connection, joined by the destructor
};

// Sends `data`, half-closes, and returns everything that came back until the peer's EOF. `ended`, when
// given, says how the reading ended ("EOF" or the receive error) and how much was sent, for a failure.
inline std::string round_trip(int fd, const std::string& data, std::string* ended = nullptr) {
  std::size_t sent = 0;
  std::thread writer([fd, &data, &sent] {
    while (sent < data.size()) {
      auto w = ::send(fd, data.data() + sent, std::min<std::size_t>(data.size() - sent, 1 << 20), MSG_NOSIGNAL);
      if (w <= 0) break;
      sent += static_cast<std::size_t>(w);
    }
    ::shutdown(fd, SHUT_WR);
  });
  std::string back;
  char buf[65536];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) back.append(buf, static_cast<std::size_t>(n));
  const int error = errno;
  writer.join();
  if (ended)
    *ended = fmt::format("{} after {} bytes back, {} of {} sent", n == 0 ? std::string("EOF") : std::strerror(error),
                         back.size(), sent, data.size());
  return back;
}

// One connection: sends `text`, half-closes, returns what came back ("" when it could not connect).
// `ended`, when given, says how (round_trip), or why it could not connect.
inline std::string echo_through(const std::string& ip, int port, const std::string& text, std::string* ended = nullptr) {
  int fd = connect_to(ip, port);
  if (fd < 0) {
    if (ended) *ended = std::string("could not connect: ") + std::strerror(errno);
    return "";
  }
  auto back = round_trip(fd, text, ended);
  ::close(fd);
  return back;
}

// True when the peer closes the connection within `ms` without sending anything.
inline bool closed_by_peer(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) != 1) return false;
  char c;
  return ::recv(fd, &c, 1, 0) <= 0;
}

// A port free on both 127.0.0.1 and ::1, below the ephemeral range (32768 and up), so no client socket
// of another test holds it.
inline int free_port() {
  static std::mt19937 rng(std::random_device{}());
  for (int attempt = 0; attempt < 500; ++attempt) {
    const int port = std::uniform_int_distribution<int>(10000, 19999)(rng);
    bool free = true;
    for (const char* ip : {"127.0.0.1", "::1"}) {
      const bool v6 = ip[0] == ':';
      int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
      sockaddr_storage ss{};
      socklen_t len;
      if (v6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(static_cast<std::uint16_t>(port));
        ::inet_pton(AF_INET6, ip, &a->sin6_addr);
        len = sizeof *a;
      } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(static_cast<std::uint16_t>(port));
        ::inet_pton(AF_INET, ip, &a->sin_addr);
        len = sizeof *a;
      }
      free = free && ::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0;
      ::close(fd);
    }
    if (free) return port;
  }
  throw std::runtime_error("no free port from 10000 to 19999");
}

}  // namespace platform::ingress::testing
