// The sample app: a static TCP echo server with an HTTP health endpoint, for tests and `platformd dev`.
//   PORT (default 8080): every connection is echoed back byte for byte, except that a connection
//   whose first bytes are "GET /healthz" gets "HTTP/1.1 200 OK" and "ok", and "GET /" gets a greeting
//   that names GREETING (env) and the hostname.
//   ECHO_EXIT=N: exit with status N at once (the image's "crash" variant sets it).
//   ECHO_CAT=1: copy stdin to stdout, then say how many bytes it was, and exit 0 (for `platform exec --stdin`).
//   ECHO_ALLOC_MIB=N: first allocate and touch N MiB (past a memory limit: the instance is OOM-killed).
//   ECHO_IGNORE_TERM=1: ignore SIGTERM (a process that must be killed after the stop grace period).
//   ECHO_SHOW=1: print what the process sees (uid, gid, workdir, GREETING, PLATFORM_INSTANCE_ID, the
//   secrets file and whether it can write it) and exit 0: for runtime tests and exec checks.
//   ECHO_PROMPT=1: a small interactive tool (for `platform exec -i/-it`): says whether stdin is a terminal
//   and its size, then answers each line after a "> " prompt: "size" with the terminal's size now,
//   "exit N" by exiting with status N, anything else with "you said: ..."; at the end of input, "bye".
//   It prints "echo: listening on port N" once it accepts connections, and exits 0 on SIGTERM.
// No dependencies beyond libc, built with -static so the image holds one file.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

void serve(int fd) {
  char buf[65536];
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  if (n > 0) {
    std::string first(buf, static_cast<std::size_t>(n));
    auto reply = [&](const std::string& body) {
      std::string r = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
                      "\r\nConnection: close\r\n\r\n" + body;
      (void)::send(fd, r.data(), r.size(), MSG_NOSIGNAL);
    };
    if (first.rfind("GET /healthz", 0) == 0) {
      reply("ok\n");
    } else if (first.rfind("GET / ", 0) == 0) {
      char host[256] = "?";
      ::gethostname(host, sizeof host - 1);
      const char* greeting = std::getenv("GREETING");
      reply(std::string(greeting ? greeting : "hello") + " from " + host + "\n");
    } else {
      do {
        for (ssize_t off = 0; off < n;) {
          ssize_t w = ::send(fd, buf + off, static_cast<std::size_t>(n - off), MSG_NOSIGNAL);
          if (w <= 0) {
            ::close(fd);
            return;
          }
          off += w;
        }
        n = ::recv(fd, buf, sizeof buf, 0);
      } while (n > 0);
      ::shutdown(fd, SHUT_WR);  // half-close forwarded: the peer sees our EOF after its own
    }
  }
  ::close(fd);
}

}  // namespace

int main() {
  if (std::getenv("ECHO_SHOW")) {
    char cwd[512] = "?";
    if (!::getcwd(cwd, sizeof cwd)) std::strcpy(cwd, "?");
    const char* greeting = std::getenv("GREETING");
    const char* id = std::getenv("PLATFORM_INSTANCE_ID");
    std::printf("echo: uid=%d gid=%d cwd=%s greeting=%s instance=%s\n", static_cast<int>(::getuid()),
                static_cast<int>(::getgid()), cwd, greeting ? greeting : "", id ? id : "");
    std::string secrets;
    if (FILE* f = std::fopen("/run/platform/secrets", "r")) {
      char buf[256];
      for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) secrets.append(buf, n);
      std::fclose(f);
      for (auto& c : secrets)
        if (c == '\n') c = '|';
      int w = ::open("/run/platform/secrets", O_WRONLY | O_APPEND);
      std::printf("echo: secrets=%s writable=%s\n", secrets.c_str(), w >= 0 ? "yes" : "no");
    } else {
      std::printf("echo: secrets=none\n");
    }
    return 0;
  }
  if (std::getenv("ECHO_CAT")) {  // stdin to stdout, then the count (on stdout too: one stream keeps its order)
    char buf[4096];
    std::size_t total = 0;
    for (ssize_t n; (n = ::read(0, buf, sizeof buf)) > 0;) {
      (void)!::write(1, buf, static_cast<std::size_t>(n));
      total += static_cast<std::size_t>(n);
    }
    std::printf("echo: %zu bytes from stdin\n", total);
    return 0;
  }
  if (std::getenv("ECHO_PROMPT")) {
    auto size = [] {
      winsize ws{};
      if (::ioctl(0, TIOCGWINSZ, &ws) != 0) return std::string("none");
      return std::to_string(ws.ws_row) + "x" + std::to_string(ws.ws_col);
    };
    std::printf("echo: tty=%s size=%s\n", ::isatty(0) ? "yes" : "no", size().c_str());
    char line[4096];
    for (;;) {
      std::printf("> ");
      std::fflush(stdout);
      if (!std::fgets(line, sizeof line, stdin)) break;
      std::string l(line);
      while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
      if (l == "size") std::printf("size=%s\n", size().c_str());
      else if (l.rfind("exit ", 0) == 0) return std::atoi(l.c_str() + 5);
      else std::printf("you said: %s\n", l.c_str());
    }
    std::printf("bye\n");
    return 0;
  }
  if (const char* e = std::getenv("ECHO_EXIT")) {
    std::fprintf(stderr, "echo: exiting with status %s (ECHO_EXIT)\n", e);
    return std::atoi(e);
  }
  if (const char* m = std::getenv("ECHO_ALLOC_MIB")) {
    const long mib = std::atol(m);
    std::fprintf(stderr, "echo: allocating %ld MiB (ECHO_ALLOC_MIB)\n", mib);
    for (long i = 0; i < mib; ++i) {
      auto* block = static_cast<char*>(std::malloc(1 << 20));
      if (!block) return 12;
      for (int j = 0; j < (1 << 20); j += 4096) block[j] = 1;  // touched, so resident
    }
  }
  ::signal(SIGPIPE, SIG_IGN);
  if (std::getenv("ECHO_IGNORE_TERM")) {
    ::signal(SIGTERM, SIG_IGN);
  } else {
    ::signal(SIGTERM, [](int) { ::_exit(0); });
  }
  int port = std::getenv("PORT") ? std::atoi(std::getenv("PORT")) : 8080;
  int s = ::socket(AF_INET6, SOCK_STREAM, 0);
  int off = 0, on = 1;
  ::setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);  // IPv6 and IPv4 on one socket
  ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(static_cast<std::uint16_t>(port));
  a.sin6_addr = in6addr_any;
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s, 128) != 0) {
    std::perror("echo: bind/listen");
    return 1;
  }
  std::printf("echo: listening on port %d\n", port);
  std::fflush(stdout);
  for (;;) {
    int fd = ::accept(s, nullptr, nullptr);
    if (fd < 0) continue;
    std::thread(serve, fd).detach();
  }
}
