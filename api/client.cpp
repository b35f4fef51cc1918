#include "api/client.h"

#include "engine/error_details.h"
#include "engine/version.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <cerrno>
#include <mutex>
#include <sys/socket.h>
#include <vector>

namespace platform::api {
namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {
std::mutex program_mu;
std::string program_name = "platform";

std::string client_user_agent() {
  std::lock_guard lock(program_mu);
  return user_agent(program_name);
}
}  // namespace

void set_client_program(const std::string& program) {
  std::lock_guard lock(program_mu);
  program_name = program;
}

std::vector<std::string> parse_warning_header(const std::string& value) {
  std::vector<std::string> out;
  // A quoted string from `i` (at its opening quote): its text, and where it ends (npos: it does not).
  const auto quoted = [&value](std::size_t i, std::string& text) {
    for (std::size_t j = i + 1; j < value.size(); ++j) {
      if (value[j] == '\\' && j + 1 < value.size()) text += value[++j];
      else if (value[j] == '"') return j;
      else text += value[j];
    }
    return std::string::npos;
  };
  std::size_t i = 0;
  while (i < value.size()) {
    const auto open = value.find('"', i);
    if (open == std::string::npos) break;
    std::string text;
    auto end = quoted(open, text);
    if (end == std::string::npos) break;
    out.push_back(text);
    // An optional date, itself quoted (and holding a comma), before the next warning's comma.
    auto next = value.find_first_not_of(' ', end + 1);
    if (next != std::string::npos && value[next] == '"') {
      std::string date;
      end = quoted(next, date);
      if (end == std::string::npos) break;
      next = end + 1;
    }
    const auto comma = next == std::string::npos ? std::string::npos : value.find(',', next);
    if (comma == std::string::npos) break;
    i = comma + 1;
  }
  return out;
}

// One connection to the API and what it needs to run on its own: its own io_context, since a request
// runs its asynchronous steps in slices on the caller's thread (Beast's blocking calls have no
// timeouts, and a blocking read from a peer that vanished without a reset would never return).
struct Connection {
  asio::io_context io;
  beast::tcp_stream stream{io};
  Clock::time_point idle_since;
};

// The connections that requests left open, for the next ones.
struct IdleConnections {
  // The server closes a connection that sends nothing for ServerOptions::request_timeout (10 s by
  // default); one idle for half of that is not used again, so the two never cross.
  static constexpr std::chrono::seconds kMaxIdle{5};
  static constexpr std::size_t kMaxKept = 8;

  std::mutex mu;
  std::vector<std::unique_ptr<Connection>> idle;

  // The most recently used connection still fit for a request, or null.
  std::unique_ptr<Connection> take() {
    std::lock_guard lock(mu);
    while (!idle.empty()) {
      auto c = std::move(idle.back());
      idle.pop_back();
      if (usable(*c)) return c;
    }
    return nullptr;
  }
  void give(std::unique_ptr<Connection> c) {
    c->idle_since = Clock::now();
    std::lock_guard lock(mu);
    if (idle.size() >= kMaxKept) idle.erase(idle.begin());  // the oldest goes
    idle.push_back(std::move(c));
  }
  static bool usable(Connection& c) {
    if (Clock::now() - c.idle_since >= kMaxIdle) return false;
    // Between requests the server sends nothing: anything to read (its close, or an answer nobody
    // asked for) means the connection is done.
    char b;
    const auto n = ::recv(c.stream.socket().native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
};

Client::Client(std::string base_url, std::string token)
    : base_url_(std::move(base_url)), token_(std::move(token)), idle_(std::make_shared<IdleConnections>()) {
  auto u = boost::urls::parse_absolute_uri(base_url_);
  if (!u || u->scheme() != "http")
    throw PlatformError(ErrorCode::invalid_request, "API URL \"" + base_url_ + "\" is not an http:// URL",
                        "Use e.g. http://127.0.0.1:7070 (platform login --url URL).");
  host_ = std::string(u->host());
  if (host_.size() > 2 && host_.front() == '[') host_ = host_.substr(1, host_.size() - 2);
  port_ = u->has_port() ? std::string(u->port()) : "80";
}

ClientResponse Client::request(const std::string& method, const std::string& target, const std::string& body,
                               const std::map<std::string, std::string>& headers,
                               std::chrono::milliseconds timeout) const {
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, host_);
  req.set(http::field::user_agent, client_user_agent());
  if (!token_.empty()) req.set(http::field::authorization, "Bearer " + token_);
  bool keyed = false;
  for (const auto& [k, v] : headers) {
    req.set(k, v);
    keyed = keyed || beast::iequals(k, "Idempotency-Key");
  }
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = body;
  }
  req.keep_alive(true);
  req.prepare_payload();
  const bool repeatable = keyed || req.method() == http::verb::get || req.method() == http::verb::head ||
                          req.method() == http::verb::put || req.method() == http::verb::delete_;
  const auto deadline = Clock::now() + timeout;

  for (int attempt = 0;; ++attempt) {
    auto conn = attempt == 0 ? idle_->take() : nullptr;
    const bool reused = conn != nullptr;
    if (!conn) conn = std::make_unique<Connection>();
    conn->io.restart();
    asio::ip::tcp::resolver resolver(conn->io);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);

    bool done = false;
    beast::error_code failed;
    auto finish = [&](beast::error_code ec) {
      failed = ec;
      done = true;
    };
    auto exchange = [&] {
      http::async_write(conn->stream, req, [&](beast::error_code write_ec, std::size_t) {
        // A server may answer early and stop reading (an oversized body gets 413): read that answer
        // before reporting the broken write.
        if (write_ec && write_ec != asio::error::broken_pipe && write_ec != asio::error::connection_reset)
          return finish(write_ec);
        http::async_read(conn->stream, buffer, parser, [&](beast::error_code ec, std::size_t) { finish(ec); });
      });
    };
    if (reused) {
      exchange();
    } else {
      resolver.async_resolve(host_, port_, [&](beast::error_code ec, asio::ip::tcp::resolver::results_type found) {
        if (ec) return finish(ec);
        conn->stream.async_connect(found, [&](beast::error_code ec, const asio::ip::tcp::endpoint&) {
          if (ec) return finish(ec);
          exchange();
        });
      });
    }
    while (!done) {
      const auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero())
        throw PlatformError(ErrorCode::timed_out,
                            "the API at " + base_url_ + " did not answer within " +
                                (timeout.count() % 1000 == 0 ? std::to_string(timeout.count() / 1000) + " s"
                                                             : std::to_string(timeout.count()) + " ms"),
                            "Retry; check the server with `curl " + base_url_ + "/healthz`.");
      if (interrupt_ && interrupt_()) throw PlatformError(ErrorCode::interrupted, "interrupted", "");
      conn->io.run_for(std::min<Clock::duration>(left, std::chrono::milliseconds(100)));
    }
    if (failed) {
      // A kept connection the server closed as we sent: nothing was answered, so nothing was done
      // that a repeat could do twice, unless the request is not safe to repeat (then we cannot know).
      if (reused && repeatable && !parser.got_some()) continue;
      throw PlatformError(ErrorCode::unavailable, "cannot reach the API at " + base_url_ + ": " + failed.message(),
                          "Is platformd running? Start it with `platformd dev`, or check `platform context show`.");
    }
    auto& res = parser.get();
    ClientResponse out;
    out.status = static_cast<int>(res.result_int());
    const bool keep = res.keep_alive() && buffer.size() == 0;
    out.body = std::move(res.body());
    for (const auto& f : res) {
      std::string name(f.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers[name] = std::string(f.value());
      if (name == "warning")
        for (auto& w : parse_warning_header(std::string(f.value()))) out.warnings.push_back(std::move(w));
    }
    out.content_type = out.headers["content-type"];
    if (keep) {
      idle_->give(std::move(conn));
    } else {
      beast::error_code ignore;
      conn->stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignore);
    }
    if (warn_)
      for (const auto& w : out.warnings) warn_(w);
    return out;
  }
}

Json Client::call(const std::string& method, const std::string& target, const std::optional<Json>& body,
                  const std::string& idempotency_key, std::chrono::milliseconds timeout) const {
  std::map<std::string, std::string> headers;
  if (!idempotency_key.empty()) headers["Idempotency-Key"] = idempotency_key;
  return call(method, target, body, headers, timeout);
}

Json Client::call(const std::string& method, const std::string& target, const std::optional<Json>& body,
                  const std::map<std::string, std::string>& headers, std::chrono::milliseconds timeout) const {
  auto res = request(method, target, body ? body->dump() : std::string(), headers, timeout);
  Json j;
  try {
    j = Json::parse(res.body.empty() ? std::string("{}") : res.body);
  } catch (const std::exception&) {
    throw PlatformError(ErrorCode::internal,
                        "the API answered " + std::to_string(res.status) + " with a body that is not JSON", "");
  }
  if (res.status >= 400) {
    auto code = error_code_from_string(j.value("code", "internal"));
    auto hint = j.value("hint", "");
    auto rid = j.value("request_id", "");
    Error e{code, j.value("message", "HTTP " + std::to_string(res.status)), hint};
    if (j.contains("details") && j["details"].is_array()) throw DetailedError(std::move(e), j["details"], rid);
    throw PlatformErrorWithRequest(std::move(e), rid);
  }
  return j;
}

}  // namespace platform::api
