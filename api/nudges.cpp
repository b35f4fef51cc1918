#include "api/nudges.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace platform::api {
namespace asio = boost::asio;

Nudges::Hold::Hold(Nudges& n, std::string key) : n_(n), key_(std::move(key)) {
  std::lock_guard lock(n_.mu_);
  ++n_.keys_[key_].holders;
}

Nudges::Hold::~Hold() {
  std::lock_guard lock(n_.mu_);
  auto it = n_.keys_.find(key_);
  if (it != n_.keys_.end() && --it->second.holders <= 0) n_.keys_.erase(it);
}

std::uint64_t Nudges::Hold::generation() const {
  std::lock_guard lock(n_.mu_);
  return n_.keys_.at(key_).generation;
}

asio::awaitable<void> Nudges::Hold::wait(std::uint64_t seen, std::chrono::steady_clock::time_point deadline) {
  auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor, deadline);
  {
    std::lock_guard lock(n_.mu_);
    auto& k = n_.keys_.at(key_);
    if (k.generation != seen) co_return;
    k.waiters.insert(timer);
  }
  co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
  std::lock_guard lock(n_.mu_);
  n_.keys_.at(key_).waiters.erase(timer);
}

void Nudges::nudge(const std::string& key) {
  std::lock_guard lock(mu_);
  auto wake = [](Key& k) {
    ++k.generation;
    // On the timer's own strand, as the Hub does: there the wait was already begun (a waiter's strand
    // runs nothing else between registering its timer and starting to wait on it), so none is missed.
    for (const auto& t : k.waiters) asio::post(t->get_executor(), [t] { t->cancel(); });
  };
  if (key.empty()) {
    for (auto& [_, k] : keys_) wake(k);
  } else if (auto it = keys_.find(key); it != keys_.end()) {
    wake(it->second);
  }
}

std::size_t Nudges::keys() const {
  std::lock_guard lock(mu_);
  return keys_.size();
}

}  // namespace platform::api
