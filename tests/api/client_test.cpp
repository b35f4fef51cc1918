// The API client against real loopback peers that misbehave: one that accepts and never answers (a
// peer gone without a reset looks the same), one that refuses, and a request abandoned by Ctrl-C; and
// its kept-alive connections against a scripted peer that closes them, or answers unasked.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <poll.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>

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

namespace {
// A scripted HTTP/1.1 peer on 127.0.0.1: it accepts connections one after another and, on each,
// answers requests as `answer(connection number, request number on it, request)` says: the bytes to
// send back, or nullopt to close the connection without a word. With `close_after_answering` it closes
// each connection right after its first answer. It counts the connections.
struct ScriptedServer {
  using Answer = std::function<std::optional<std::string>(int conn, int req, const std::string& request)>;
  SilentServer listener;
  Answer answer;
  bool close_after_answering = false;
  std::atomic<int> connections{0};
  std::atomic<bool> stop{false};
  std::thread thread;

  explicit ScriptedServer(Answer a, bool close_after = false) : answer(std::move(a)), close_after_answering(close_after) {
    thread = std::thread([this] {
      while (!stop) {
        pollfd p{listener.fd, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        int c = ::accept(listener.fd, nullptr, nullptr);
        if (c < 0) continue;
        const int n = ++connections;
        std::string buf;
        for (int r = 1; !stop; ++r) {
          auto request = read_request(c, buf);
          if (!request) break;
          auto reply = answer(n, r, *request);
          if (!reply) break;
          (void)!::send(c, reply->data(), reply->size(), MSG_NOSIGNAL);
          if (close_after_answering) break;
        }
        ::close(c);
      }
    });
  }
  ~ScriptedServer() {
    stop = true;
    thread.join();
  }
  std::string url() const { return listener.url(); }

  // One whole request (headers, and a body as long as Content-Length says), or nullopt at the end.
  std::optional<std::string> read_request(int c, std::string& buf) {
    for (;;) {
      if (auto end = buf.find("\r\n\r\n"); end != std::string::npos) {
        std::size_t length = 0;
        if (auto at = buf.find("Content-Length: "); at != std::string::npos && at < end)
          length = std::stoul(buf.substr(at + 16));
        if (buf.size() >= end + 4 + length) {
          auto request = buf.substr(0, end + 4 + length);
          buf.erase(0, end + 4 + length);
          return request;
        }
      }
      pollfd p{c, POLLIN, 0};
      if (stop || ::poll(&p, 1, 2000) <= 0) return std::nullopt;
      char chunk[4096];
      auto got = ::recv(c, chunk, sizeof chunk, 0);
      if (got <= 0) return std::nullopt;
      buf.append(chunk, static_cast<std::size_t>(got));
    }
  }
};

std::string ok(const std::string& body) {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}
}  // namespace

TEST(ApiClient, RequestsOneAfterAnotherShareOneKeptConnection) {
  ScriptedServer server([](int, int req, const std::string&) { return ok("{\"n\":" + std::to_string(req) + "}"); });
  api::Client client(server.url(), "t");
  for (int i = 1; i <= 5; ++i) EXPECT_EQ(client.call("GET", "/v1/x")["n"], i);
  auto copy = client;  // copies share the kept connections
  EXPECT_EQ(copy.call("POST", "/v1/y", Json::object())["n"], 6);
  EXPECT_EQ(server.connections, 1);
}

TEST(ApiClient, AConnectionThePeerClosedWhileIdleIsNotUsedAgain) {
  // One answer per connection, then a close (as a server closes an idle one): the next request sees
  // the close before sending and opens a new connection, whatever its method.
  ScriptedServer server(
      [](int conn, int, const std::string&) -> std::optional<std::string> {
        return ok("{\"conn\":" + std::to_string(conn) + "}");
      },
      true);
  api::Client client(server.url(), "t");
  EXPECT_EQ(client.call("GET", "/v1/x")["conn"], 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // its close has arrived
  EXPECT_EQ(client.call("POST", "/v1/y", Json::object())["conn"], 2);
}

TEST(ApiClient, AnAnswerNobodyAskedForRetiresTheConnection) {
  // After answering, the peer sends a second answer unasked (as a server that times an idle connection
  // out with a 408 would): that must never be read as the answer to the next request.
  ScriptedServer server([](int conn, int, const std::string&) -> std::optional<std::string> {
    return ok("{\"conn\":" + std::to_string(conn) + "}") + ok("{\"stale\":true}");
  });
  api::Client client(server.url(), "t");
  EXPECT_EQ(client.call("GET", "/v1/x")["conn"], 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto second = client.call("GET", "/v1/x");
  EXPECT_FALSE(second.contains("stale")) << second.dump();
}

TEST(ApiClient, AKeptConnectionThatFailsIsRetriedOnlyWhenTheRequestIsSafeToRepeat) {
  // The peer reads the second request on a connection and closes it unanswered: a request that is
  // safe to repeat goes again on a fresh connection; a POST without an Idempotency-Key fails, since
  // the server may have acted on it.
  std::atomic<int> seen{0};
  ScriptedServer server([&](int conn, int req, const std::string&) -> std::optional<std::string> {
    ++seen;
    if (req > 1) return std::nullopt;
    return ok("{\"conn\":" + std::to_string(conn) + "}");
  });
  api::Client client(server.url(), "t");
  // The close comes only once the next request is read, so the kept connection looks fine before.
  EXPECT_EQ(client.call("GET", "/v1/x")["conn"], 1);
  EXPECT_EQ(client.call("GET", "/v1/x")["conn"], 2);  // conn 1 failed unanswered; sent again
  EXPECT_EQ(client.call("DELETE", "/v1/x")["conn"], 3);
  EXPECT_EQ(client.call("POST", "/v1/x", Json::object(), "idem-1")["conn"], 4);
  const int before = seen;
  EXPECT_EQ(code_of([&] { client.call("POST", "/v1/x", Json::object()); }), ErrorCode::unavailable);
  EXPECT_EQ(seen, before + 1) << "a POST without an Idempotency-Key was sent twice";
  EXPECT_EQ(server.connections, 4);
}
