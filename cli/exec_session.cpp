// platform exec -i / -it: opens a session (POST …/instances/{instance}/sessions), then one thread sends
// what we read on stdin (and, on a terminal, each resize) as numbered input chunks while this one
// long-polls the output and writes it to stdout, until the command exits. On a terminal ours is put in
// raw mode for the session (keys, Ctrl-C included, go to the command) and restored however we leave.
#include "cli/exec_session.h"

#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <optional>
#include <thread>

#include "engine/crypto.h"
#include "engine/error.h"

namespace platform::cli {
namespace {

volatile std::sig_atomic_t g_resized = 0;
extern "C" void platform_cli_on_sigwinch(int) { g_resized = 1; }

// Raw mode on our terminal for as long as it lives.
class RawTerminal {
 public:
  explicit RawTerminal(int fd) : fd_(fd) {
    if (::tcgetattr(fd_, &saved_) != 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    if (::tcsetattr(fd_, TCSADRAIN, &raw) == 0) active_ = true;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(fd_, TCSADRAIN, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

std::pair<int, int> window_size() {
  winsize ws{};
  for (int fd : {0, 1, 2})
    if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) return {ws.ws_row, ws.ws_col};
  return {24, 80};
}

void write_out(const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    auto n = ::write(1, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // stdout is gone: nothing to show the rest on
    done += static_cast<std::size_t>(n);
  }
}

// Sends our stdin (and resizes) to the session until stdin ends, `stop`, or the session refuses input.
// A failure other than the session's end is set in `failure`, and the session is ended (its command
// must not wait for input that will never come).
void send_input(const api::Client& client, const std::string& base, bool tty, const std::atomic<bool>& stop,
                std::string& failure) {
  std::int64_t seq = 0;
  auto post = [&](Json chunk) {
    chunk["seq"] = ++seq;
    for (int attempt = 0; !stop; ++attempt) {
      try {
        client.call("POST", base + "/input", chunk, std::string(), std::chrono::seconds(10));
        return true;
      } catch (const PlatformError& e) {
        if (e.error().code == ErrorCode::precondition_failed) return false;  // it has ended
        // Unavailable: the command has 4 MiB of our input unread (a pipe that is full), or the API is
        // away; the output poll ends the session when that lasts. Anything else is final.
        if (e.error().code != ErrorCode::unavailable && (e.error().code != ErrorCode::timed_out || attempt >= 10)) {
          failure = e.what();
          try {
            client.call("DELETE", base, std::nullopt, std::string(), std::chrono::seconds(5));
          } catch (const std::exception&) {
          }
          return false;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100 + 50 * std::min(attempt, 8)));
    }
    return false;
  };
  char buf[16384];
  while (!stop) {
    if (tty && g_resized) {
      g_resized = 0;
      auto [rows, cols] = window_size();
      if (!post({{"rows", rows}, {"cols", cols}})) return;
    }
    pollfd p{0, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    if (tty && g_resized) continue;  // a resize before the keys typed after it
    const auto n = ::read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      post({{"eof", true}});
      return;
    }
    if (!post({{"data", base64_encode(std::string(buf, static_cast<std::size_t>(n)))}})) return;
  }
}

}  // namespace

void run_exec_session(const Globals& g, const Session& s, const std::string& instance, Json body, bool tty) {
  if (g.format() != Format::table)
    throw PlatformError(ErrorCode::invalid_request, "-o " + g.output + " does not apply to an interactive session",
                        "Drop -i/-t to get the command's output and exit status as one JSON document.");
  if (tty && !::isatty(0))
    throw PlatformError(ErrorCode::invalid_request, "-t needs a terminal on stdin, and this stdin is not one",
                        "Use -i alone to stream a pipe or a file to the command.");
  body["tty"] = tty;
  if (tty) {
    auto [rows, cols] = window_size();
    body["rows"] = rows;
    body["cols"] = cols;
  }
  auto client = s.client();  // Ctrl-C ends its requests (without a terminal; with one, Ctrl-C is the command's)
  auto opened = client.call("POST", s.env_path() + "/instances/" + api::url_encode(instance) + "/sessions", body,
                            std::string(), std::chrono::seconds(30));
  const auto id = opened.value("session_id", "");
  const auto base = "/v1/sessions/" + api::url_encode(id);
  auto quiet = s.client();  // for ending the session after Ctrl-C, which the first one would refuse at once
  quiet.set_interrupt([] { return false; });
  if (tty)
    note(g, "exec: connected to " + opened.value("instance", "") + " (" + id +
                "); the session ends when its command exits");
  else if (instance != opened.value("instance", "") && instance != opened.value("instance_id", ""))
    note(g, "exec: in " + opened.value("instance", "") + ", a running " + instance + " instance");

  std::optional<RawTerminal> raw;
  struct sigaction winch{}, term{}, old_winch{}, old_term{}, old_hup{};
  if (tty) {
    raw.emplace(0);
    winch.sa_handler = platform_cli_on_sigwinch;
    ::sigaction(SIGWINCH, &winch, &old_winch);
  }
  // SIGTERM and SIGHUP end the session like Ctrl-C, so the terminal is restored on the way out.
  term.sa_handler = [](int) { std::raise(SIGINT); };
  ::sigaction(SIGTERM, &term, &old_term);
  ::sigaction(SIGHUP, &term, &old_hup);
  auto restore = [&] {
    raw.reset();
    if (tty) ::sigaction(SIGWINCH, &old_winch, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);
    ::sigaction(SIGHUP, &old_hup, nullptr);
  };

  std::atomic<bool> stop{false};
  std::string input_failure;
  std::thread input([&] { send_input(quiet, base, tty, stop, input_failure); });
  auto finish = [&] {
    stop = true;
    input.join();
    restore();
  };
  Json last;
  try {
    std::int64_t after = 0;
    for (;;) {
      auto page = client.call("GET", base + "/output?after=" + std::to_string(after) + "&wait=20s", std::nullopt,
                              std::string(), std::chrono::seconds(35));
      const Json chunks = page.value("chunks", Json::array());
      for (const auto& c : chunks) write_out(base64_decode(c.value("data", "")).value_or(""));
      after = page.value("next", after);
      if (page.value("ended", false)) {
        last = page;
        break;
      }
    }
  } catch (const PlatformError& e) {
    // Interrupted, or the API is gone: end the session (its command is killed) and say why we left.
    try {
      quiet.call("DELETE", base, std::nullopt, std::string(), std::chrono::seconds(5));
    } catch (const std::exception&) {
    }
    finish();
    throw;
  }
  finish();
  if (!input_failure.empty())
    throw PlatformError(ErrorCode::failed, "the session ended: its input could not be sent: " + input_failure,
                        "Check the API with `platform context show`, then open a new session.");
  if (last["exit_code"].is_number_integer()) throw ExitWith{last["exit_code"].get<int>()};
  throw PlatformError(ErrorCode::failed,
                      "the session in " + opened.value("instance", "") + " ended without an exit status: " +
                          last.value("error", "killed"),
                      "`platform instance describe " + opened.value("instance", "") +
                          "` shows whether the instance is still running.");
}

}  // namespace platform::cli
