// The API client against real loopback peers that misbehave: one that accepts and never answers (a
// peer gone without a reset looks the same), one that refuses, and a request abandoned by Ctrl-C.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>

#include "api/client.h"

using namespace platform;
using Clock = std::chrono::steady_clock;

namespace {
// A listening socket on 127.0.0.1 with a kernel-chosen port. The kernel completes handshakes into
// its backlog, so a client connects and sends, and nothing ever answers.
struct SilentServer {
  int fd = -1;
  int port = 0;
  SilentServer() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd, 16), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~SilentServer() { ::close(fd); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

ErrorCode code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const PlatformError& e) {
    return e.error().code;
  }
  ADD_FAILURE() << "no error";
  return ErrorCode::internal;
}
}  // namespace

TEST(ApiClient, APeerThatNeverAnswersTimesOutInsteadOfHanging) {
  SilentServer silent;
  api::Client client(silent.url(), "");
  const auto t0 = Clock::now();
  EXPECT_EQ(code_of([&] { client.call("GET", "/v1/orgs", std::nullopt, "", std::chrono::milliseconds(300)); }),
            ErrorCode::timed_out);
  const auto took = Clock::now() - t0;
  EXPECT_GE(took, std::chrono::milliseconds(300));
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST(ApiClient, ARefusedConnectionIsUnavailable) {
  int port = 0;
  {
    SilentServer gone;  // a port that was free a moment ago, closed again: connections are refused
    port = gone.port;
  }
  api::Client client("http://127.0.0.1:" + std::to_string(port), "");
  EXPECT_EQ(code_of([&] { client.call("GET", "/healthz"); }), ErrorCode::unavailable);
}

TEST(ApiClient, TheInterruptCheckAbandonsARequestAtOnce) {
  SilentServer silent;
  api::Client client(silent.url(), "");
  const auto t0 = Clock::now();
  client.set_interrupt([&] { return Clock::now() - t0 > std::chrono::milliseconds(200); });
  EXPECT_EQ(code_of([&] { client.call("GET", "/v1/orgs/o/events?wait=25s", std::nullopt, "", std::chrono::seconds(40)); }),
            ErrorCode::interrupted);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2));
}
