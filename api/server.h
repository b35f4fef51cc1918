#pragma once
// The REST API server (Beast HTTP/1.1, C++20 coroutines). Limits on body, headers, request time and
// concurrent connections; a malformed request gets a 4xx and the server keeps serving.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "api/context.h"

namespace platform::db {
class Pool;
}

namespace platform {
class Signal;
}

namespace platform::api {

struct ServerOptions {
  std::string address = "127.0.0.1";
  std::uint16_t port = 7070;  // 0: any free port (see Server::port())
  std::size_t max_connections = 10000;
  std::size_t body_limit = 1 << 20;       // 1 MiB
  std::size_t header_limit = 16 * 1024;   // 16 KiB
  std::chrono::milliseconds request_timeout{10000};  // to receive one whole request
  int io_threads = 2;
  int worker_threads = 8;  // blocking database work
  std::size_t db_pool_size = 8;
  std::chrono::milliseconds apply_wait{2000};
  // The secrets key file (engine/secrets); empty: the secrets endpoints answer 503.
  std::string secrets_key_file;
  // The edge's shared TLS listeners, as its config snapshot names them.
  std::vector<ListenAddress> edge_tls_listen;
};

class Server {
 public:
  // `wake` is signalled by the process's LISTEN connection.
  Server(ServerOptions options, std::string conninfo, Signal& wake);
  ~Server();
  void start();  // binds and listens; throws when the address is taken
  void stop();   // stops accepting, closes connections, joins threads
  std::uint16_t port() const;
  db::Pool& pool();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace platform::api
