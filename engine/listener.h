#pragma once
// One LISTEN connection per process, dispatching on Asio. A notification is only a wake-up: on every
// notification, and after every (re)connect, `on_wake` is called and the owner catches up by cursor.
// The second form passes each notification's payload, and "" after a (re)connect (anything may have
// been missed).
#include <functional>
#include <memory>
#include <string>

namespace boost::asio {
class io_context;
}

namespace platform {

class Listener {
 public:
  Listener(boost::asio::io_context& io, std::string conninfo, std::string channel, std::function<void()> on_wake);
  Listener(boost::asio::io_context& io, std::string conninfo, std::string channel,
           std::function<void(const std::string& payload)> on_notify);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  void start();
  void stop();
  bool connected() const;
  std::uint64_t reconnects() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace platform
