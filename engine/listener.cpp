#include "engine/listener.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <pqxx/pqxx>

namespace platform {
namespace asio = boost::asio;

namespace {
class Receiver : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection_base& c, const std::string& channel, std::function<void(const std::string&)>& cb)
      : pqxx::notification_receiver(c, channel), cb_(cb) {}
  void operator()(const std::string& payload, int) override { cb_(payload); }

 private:
  std::function<void(const std::string&)>& cb_;
};
}  // namespace

struct Listener::Impl : std::enable_shared_from_this<Impl> {
  asio::io_context& io;
  std::string conninfo, channel;
  std::function<void(const std::string&)> on_wake;
  std::atomic<bool> stopping{false}, is_connected{false};
  std::atomic<std::uint64_t> reconnect_count{0};
  std::shared_ptr<asio::posix::stream_descriptor> fd;
  std::shared_ptr<asio::steady_timer> backoff;

  Impl(asio::io_context& i, std::string c, std::string ch, std::function<void(const std::string&)> w)
      : io(i), conninfo(std::move(c)), channel(std::move(ch)), on_wake(std::move(w)) {}

  asio::awaitable<void> run() {
    auto self = shared_from_this();
    std::chrono::milliseconds delay{100};
    while (!stopping) {
      try {
        pqxx::connection conn(conninfo);
        {
          pqxx::nontransaction tx(conn);
          tx.exec("SET application_name = 'platform-listener'");
        }
        Receiver receiver(conn, channel, on_wake);
        fd = std::make_shared<asio::posix::stream_descriptor>(io, ::dup(conn.sock()));
        is_connected = true;
        delay = std::chrono::milliseconds(100);
        on_wake("");  // catch up whatever was appended while we were not listening
        while (!stopping) {
          auto [ec] = co_await fd->async_wait(asio::posix::stream_descriptor::wait_read,
                                              asio::as_tuple(asio::use_awaitable));
          if (ec || stopping) break;
          conn.get_notifs();  // throws broken_connection when the server went away
        }
      } catch (const std::exception& e) {
        if (!stopping) spdlog::warn("LISTEN connection lost ({}); reconnecting", e.what());
      }
      is_connected = false;
      if (fd) {
        boost::system::error_code ignore;
        fd->close(ignore);
        fd.reset();
      }
      if (stopping) break;
      ++reconnect_count;
      backoff = std::make_shared<asio::steady_timer>(io, delay);
      co_await backoff->async_wait(asio::as_tuple(asio::use_awaitable));
      delay = std::min(delay * 2, std::chrono::milliseconds(5000));
    }
  }
};

Listener::Listener(asio::io_context& io, std::string conninfo, std::string channel, std::function<void()> on_wake)
    : Listener(io, std::move(conninfo), std::move(channel),
               std::function<void(const std::string&)>([w = std::move(on_wake)](const std::string&) { w(); })) {}

Listener::Listener(asio::io_context& io, std::string conninfo, std::string channel,
                   std::function<void(const std::string&)> on_notify)
    : impl_(std::make_shared<Impl>(io, std::move(conninfo), std::move(channel), std::move(on_notify))) {}

Listener::~Listener() { stop(); }

void Listener::start() {
  asio::co_spawn(impl_->io, [impl = impl_]() { return impl->run(); }, asio::detached);
}

void Listener::stop() {
  if (impl_->stopping.exchange(true)) return;
  asio::post(impl_->io, [impl = impl_] {
    boost::system::error_code ignore;
    if (impl->fd) impl->fd->cancel(ignore);
    if (impl->backoff) impl->backoff->cancel();
  });
}

bool Listener::connected() const { return impl_->is_connected; }
std::uint64_t Listener::reconnects() const { return impl_->reconnect_count; }

}  // namespace platform
