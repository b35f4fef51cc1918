// run_session (agent/exec_requests.h): one interactive session, relayed between its runtime Session and
// the API. This thread reads the command's output and posts it in chunks (what arrived within 2 ms of
// the last bytes goes together, at most 64 KiB); a second thread long-polls its input and writes it to
// the command. A post waits for the API, so a reader that falls behind holds the command back.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <thread>

#include "agent/exec_requests.h"
#include "engine/crypto.h"
#include "engine/error.h"

namespace platform::agent {
namespace {

constexpr std::size_t kChunk = 64 << 10;

// Writes all of `data` to the command, giving up when it has stopped reading for a minute or `done`.
void write_all(int fd, const std::string& data, const std::atomic<bool>& done) {
  std::size_t sent = 0;
  auto stalled_since = std::chrono::steady_clock::now();
  while (sent < data.size() && !done) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 100) <= 0) {
      if (std::chrono::steady_clock::now() - stalled_since > std::chrono::minutes(1)) return;
      continue;
    }
    auto n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == ENOTSOCK) n = ::write(fd, data.data() + sent, data.size() - sent);  // a terminal
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return;  // it closed its input
    sent += static_cast<std::size_t>(n);
    stalled_since = std::chrono::steady_clock::now();
  }
}

}  // namespace

void run_session(const api::Client& client, Runtime* runtime, const Json& s, const std::function<bool()>& stopping) {
  const auto id = s.value("session_id", "");
  const auto base = "/v1/agent/sessions/" + api::url_encode(id);
  std::int64_t out_seq = 0;
  std::atomic<bool> closed{false};  // the API said to end it: output nobody will read is not sent
  // Posts one output chunk (or the end), retrying while the API is away or the client behind. False:
  // the session is gone (the API no longer knows it, or it was ended meanwhile), or the agent is stopping.
  auto post = [&](Json body) {
    body["seq"] = ++out_seq;
    const bool end = body.value("ended", false);
    for (int attempt = 0; !stopping() && (end || !closed); ++attempt) {
      try {
        client.call("POST", base + "/output", body, std::string(), std::chrono::seconds(10));
        return true;
      } catch (const PlatformError& e) {
        const auto code = e.error().code;
        if (code == ErrorCode::not_found || code == ErrorCode::invalid_request) return false;
        // The client behind (503) waits as long as the session lasts; the API away, half a minute.
        if (attempt >= 150 && !(code == ErrorCode::unavailable && !end)) return false;
      } catch (const std::exception&) {
        if (attempt >= 150) return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return false;
  };
  auto fail = [&](const std::string& why) { post({{"ended", true}, {"error", why}}); };

  const auto instance = s.value("instance_id", "");
  const auto run = runtime ? running_run(*runtime, instance) : std::nullopt;
  if (!run) return fail("instance " + instance + " is not running on this host");
  std::vector<std::string> argv;
  const Json command = s.value("command", Json::array()), vars = s.value("env", Json::object());
  for (const auto& a : command) argv.push_back(a.get<std::string>());
  std::map<std::string, std::string> env;
  for (const auto& [k, v] : vars.items()) env[k] = v.get<std::string>();
  std::unique_ptr<Session> session;
  try {
    session = runtime->open_session(*run, argv, env, s.value("tty", false), s.value("rows", 24), s.value("cols", 80));
  } catch (const std::exception& e) {
    return fail(e.what());
  }

  std::atomic<bool> done{false};
  std::mutex mu;
  std::string closed_why;  // the API said to end it: why
  std::thread input([&] {
    std::int64_t after = 0;
    while (!done && !stopping()) {
      Json page;
      try {
        page = client.call("GET", base + "/input?after=" + std::to_string(after) + "&wait=20s", std::nullopt,
                           std::string(), std::chrono::seconds(35));
      } catch (const PlatformError& e) {
        if (e.error().code == ErrorCode::not_found) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        continue;
      } catch (const std::exception&) {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        continue;
      }
      const Json chunks = page.value("chunks", Json::array());
      for (const auto& c : chunks) {
        if (c.contains("rows")) session->resize(c["rows"].get<int>(), c["cols"].get<int>());
        if (auto data = base64_decode(c.value("data", "")); data && !data->empty()) write_all(session->fd(), *data, done);
        if (c.value("eof", false)) session->end_input();
      }
      after = page.value("next", after);
      if (page.value("close", false)) {
        {
          std::lock_guard lock(mu);
          closed_why = page.value("why", "the client ended it");
        }
        closed = true;
        session->kill();  // the client ended it or went away: the output side sees the end
        break;
      }
    }
  });

  // Output until the command's side closes (or, should something it started hold that open, it exits).
  std::string pending;
  char buf[16384];
  bool open = true;
  std::optional<int> code;
  while (open && !stopping()) {
    pollfd p{session->fd(), POLLIN, 0};
    const int ready = ::poll(&p, 1, pending.empty() ? 200 : 2);
    if (ready > 0) {
      const auto n = ::read(session->fd(), buf, sizeof buf);
      if (n > 0) {
        pending.append(buf, static_cast<std::size_t>(n));
        if (pending.size() < kChunk) continue;  // gather what follows within 2 ms
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        continue;
      } else {
        open = false;  // EOF, or EIO from a terminal nobody holds any more
      }
    } else if (pending.empty() && (code = session->wait(std::chrono::milliseconds(0)))) {
      // Exited with its output side still held open by something it left behind: take what is there.
      pollfd q{session->fd(), POLLIN, 0};
      if (::poll(&q, 1, 50) > 0) continue;
      open = false;
    }
    while (!pending.empty()) {
      const auto take = std::min(pending.size(), kChunk);
      if (!post({{"data", base64_encode(pending.substr(0, take))}})) {
        // Nobody will read it (the session was ended, or the API is gone): end the command, and
        // below, say how it ended.
        session->kill();
        pending.clear();
        open = false;
        break;
      }
      pending.erase(0, take);
    }
  }
  if (stopping()) session->kill();
  if (!code) code = session->wait(std::chrono::seconds(10));
  if (!code) {
    session->kill();
    code = session->wait(std::chrono::seconds(5));
  }
  done = true;
  if (const auto why = session->start_failure(); !why.empty())
    post({{"data", base64_encode(why + (s.value("tty", false) ? "\r\n" : "\n"))}});
  Json end = {{"ended", true}};
  bool killed_here = false;  // ended by us (the client ended it, the agent stops): its status is ours, not its own
  {
    std::lock_guard lock(mu);
    if (stopping()) end["error"] = "the agent on this host stopped";
    else if (!closed_why.empty()) end["error"] = closed_why;
    killed_here = end.contains("error");
  }
  // A command killed on the client's behalf says so alone: whether its status reads 137 or none depends
  // on which of runc's processes the kill reached first, and neither is what the command did.
  if (code && *code >= 0 && !killed_here) end["exit_code"] = *code;
  else if (!end.contains("error")) end["error"] = "killed";
  post(end);
  input.join();
}

}  // namespace platform::agent
