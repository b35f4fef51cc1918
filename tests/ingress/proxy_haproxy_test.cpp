// PROXY v2 against an independent implementation: HAProxy (mode tcp, `accept-proxy`) sits between the
// edge and the backend and logs the client address it read from each header, and the AUTHORITY TLV.
// IPv4 and IPv6 clients; 1,000 concurrent connections through it, none truncated; and a TLS route whose
// server name arrives as the authority.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "ingress/edge.h"
#include "tests/ingress/loopback.h"

namespace platform::ingress {
namespace {
namespace fs = std::filesystem;
using namespace platform::ingress::testing;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class HaproxyPeer : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/usr/sbin/haproxy", X_OK) != 0) GTEST_SKIP() << "needs haproxy (scripts/setup installs it)";
    rlimit r{};  // 1,000 connections: the client, edge and echo ends all live in this process
    ::getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = std::min<rlim_t>(r.rlim_max, 16384);
    ::setrlimit(RLIMIT_NOFILE, &r);
    dir_ = fs::temp_directory_path() / ("platform-haproxy-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    haproxy_port_ = free_port();
    // One thread: with several, HAProxy drops a `log stdout` line when another thread holds the output
    // (haproxy/haproxy#1861), and the thousand-connection test counts every line.
    std::ofstream(dir_ / "haproxy.cfg")
        << "global\n  log stdout format raw local0\n  maxconn 4096\n  nbthread 1\n"
           "defaults\n  mode tcp\n  log global\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n"
           "frontend fe\n  bind 127.0.0.1:" << haproxy_port_ << " accept-proxy\n"
           "  log-format \"client=%ci port=%cp authority=%[fc_pp_authority]\"\n"
           "  default_backend be\n"
           "backend be\n  server echo 127.0.0.1:" << echo_.port() << "\n";
    pid_ = ::fork();
    if (pid_ == 0) {
      int out = ::open((dir_ / "haproxy.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::execl("/usr/sbin/haproxy", "haproxy", "-db", "-f", (dir_ / "haproxy.cfg").c_str(), nullptr);
      ::_exit(127);
    }
    for (int i = 0; i < 200; ++i) {  // up once it accepts
      int fd = connect_to("127.0.0.1", haproxy_port_);
      if (fd >= 0) {
        ::close(fd);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    fs::remove_all(dir_);
  }
  // HAProxy's log lines that name `port` as the client's port (it logs when a connection ends).
  std::string logged(int port) {
    const auto needle = " port=" + std::to_string(port) + " ";
    for (int i = 0; i < 200; ++i) {
      std::istringstream lines(slurp(dir_ / "haproxy.log"));
      for (std::string line; std::getline(lines, line);)
        if (line.find(needle) != std::string::npos) return line;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return "";
  }
  static int local_port(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    return ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                    : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  }
  Json endpoint_via_haproxy(int v6_port, int v4_port) const {
    return {{"id", "ep_pp"},
            {"proxy_protocol", "v2"},
            {"listen", {{{"address", "::1"}, {"port", v6_port}}, {{"address", "127.0.0.1"}, {"port", v4_port}}}},
            {"backends", {{{"address", "127.0.0.1"}, {"port", haproxy_port_}}}}};
  }

  EchoServer echo_;
  fs::path dir_;
  int haproxy_port_ = 0;
  pid_t pid_ = -1;
};

TEST_F(HaproxyPeer, HaproxyReadsTheClientsAddressForIpv4AndIpv6Clients) {
  Edge edge;
  const int p6 = free_port(), p4 = free_port();
  edge.apply(parse_edge_config({{"version", 1}, {"endpoints", {endpoint_via_haproxy(p6, p4)}}}));
  for (const char* ip : {"127.0.0.1", "::1"}) {
    int fd = connect_to(ip, ip[0] == ':' ? p6 : p4);
    ASSERT_GE(fd, 0) << ip;
    const int port = local_port(fd);
    EXPECT_EQ(round_trip(fd, std::string("hello from ") + ip), std::string("hello from ") + ip)
        << "HAProxy took the header and passed the payload on";
    ::close(fd);
    EXPECT_EQ(logged(port), "client=" + std::string(ip) + " port=" + std::to_string(port) + " authority=-")
        << slurp(dir_ / "haproxy.log");
  }
}

TEST_F(HaproxyPeer, AThousandConcurrentConnectionsThroughHaproxyNoneTruncated) {
  Edge edge;
  const int p6 = free_port(), p4 = free_port();
  edge.apply(parse_edge_config({{"version", 1}, {"endpoints", {endpoint_via_haproxy(p6, p4)}}}));
  constexpr int kConnections = 1000;
  std::vector<int> fds;
  std::vector<std::string> sent;
  for (int i = 0; i < kConnections; ++i) {  // all open at once
    const bool v6 = i % 2 == 0;
    int fd = connect_to(v6 ? "::1" : "127.0.0.1", v6 ? p6 : p4);
    ASSERT_GE(fd, 0) << "connection " << i;
    fds.push_back(fd);
  }
  for (int i = 0; i < kConnections; ++i) {
    std::string payload = fmt::format("connection {:04} ", i);
    while (payload.size() < 4096) payload += static_cast<char>('a' + (payload.size() + i) % 26);
    ASSERT_EQ(::send(fds[i], payload.data(), payload.size(), MSG_NOSIGNAL), static_cast<ssize_t>(payload.size()));
    ::shutdown(fds[i], SHUT_WR);
    sent.push_back(std::move(payload));
  }
  int exact = 0;
  for (int i = 0; i < kConnections; ++i) {
    std::string back;
    char buf[8192];
    for (ssize_t n; (n = ::recv(fds[i], buf, sizeof buf, 0)) > 0;) back.append(buf, static_cast<std::size_t>(n));
    ::close(fds[i]);
    if (back == sent[i]) ++exact;
    else ADD_FAILURE() << "connection " << i << " got " << back.size() << " of " << sent[i].size() << " bytes back";
  }
  EXPECT_EQ(exact, kConnections);
  // HAProxy read a valid header on every one of them (a bad header is logged as a connection error). It
  // logs a connection when it ends, which can be a moment after the client saw its end: wait, bounded.
  int logged_clients = 0;
  for (int attempt = 0; attempt < 200 && logged_clients < kConnections; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    logged_clients = 0;
    std::istringstream lines(slurp(dir_ / "haproxy.log"));
    for (std::string line; std::getline(lines, line);) logged_clients += line.rfind("client=", 0) == 0;
  }
  EXPECT_GE(logged_clients, kConnections);
}

TEST_F(HaproxyPeer, ATlsRoutesServerNameArrivesAsTheAuthority) {
  if (::access("/usr/bin/openssl", X_OK) != 0) GTEST_SKIP() << "needs openssl";
  Edge edge;
  const int tls = free_port();
  edge.apply(parse_edge_config(
      {{"version", 1},
       {"tls",
        {{"listen", {{{"address", "::1"}, {"port", tls}}}},
         {"routes", {{{"id", "rt_pp"}, {"hostnames", {"shop.example.com"}}, {"proxy_protocol", "v2"},
                      {"backends", {{{"address", "127.0.0.1"}, {"port", haproxy_port_}}}}}}}}}}));
  // The backend is the echo server, not a TLS server: the hello comes back, which is enough here.
  int fd = connect_to("::1", tls);
  ASSERT_GE(fd, 0);
  const int port = local_port(fd);
  ::close(fd);  // nothing sent: no hello, so nothing is forwarded and HAProxy logs nothing
  EXPECT_EQ(logged(port), "");
  const auto cmd = "echo | timeout 3 openssl s_client -connect '[::1]:" + std::to_string(tls) +
                   "' -servername shop.example.com >/dev/null 2>&1";
  (void)std::system(cmd.c_str());
  bool seen = false;
  for (int i = 0; i < 200 && !seen; ++i) {
    seen = slurp(dir_ / "haproxy.log").find("client=::1 port=") != std::string::npos &&
           slurp(dir_ / "haproxy.log").find("authority=shop.example.com") != std::string::npos;
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_TRUE(seen) << slurp(dir_ / "haproxy.log");
}

}  // namespace
}  // namespace platform::ingress
