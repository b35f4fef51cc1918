#include "api/hub.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "engine/db.h"

namespace platform::api {
namespace asio = boost::asio;

Hub::Hub(std::string conninfo, std::size_t capacity) : conninfo_(std::move(conninfo)), capacity_(capacity) {}

Hub::~Hub() { stop(); }

void Hub::start(Signal& wake) {
  wake_ = &wake;
  thread_ = std::thread([this, &wake] { run(wake); });
}

void Hub::stop() {
  if (stopping_.exchange(true)) return;
  if (wake_) wake_->notify();
  if (thread_.joinable()) thread_.join();
}

void Hub::run(Signal& wake) {
  std::unique_ptr<pqxx::connection> conn;
  while (!stopping_) {
    try {
      if (!conn || !conn->is_open()) conn = db::connect(conninfo_, "platform-watch-hub");
      auto seen = wake.generation();
      // Each read is one statement in autocommit (one snapshot, one round trip): between a NOTIFY and
      // the waiters' wake-up there is nothing else to wait for.
      if (!ready()) {
        pqxx::nontransaction tx(*conn);
        auto start = events::head(tx);
        std::lock_guard lock(mu_);
        base_ = head_ = start;
        ready_ = true;
        continue;
      }
      events::Page page;
      {
        pqxx::nontransaction tx(*conn);
        page = events::read_after(tx, head(), {}, 1000);
      }
      if (!page.events.empty()) {
        {
          std::lock_guard lock(mu_);
          for (auto& e : page.events) ring_.push_back(std::move(e));
          while (ring_.size() > capacity_) {
            base_ = ring_.front().cursor;
            ring_.pop_front();
          }
          head_ = page.next;
        }
        wake_waiters();
        continue;
      }
      wake.wait_for(seen, page.held_back ? std::chrono::milliseconds(20) : std::chrono::milliseconds(1000));
    } catch (const std::exception& e) {
      if (stopping_) break;
      spdlog::warn("watch hub: {}; retrying", e.what());
      conn.reset();
      wake.wait_for(wake.generation(), std::chrono::milliseconds(500));
    }
  }
}

void Hub::wake_waiters() {
  std::lock_guard lock(mu_);
  for (const auto& t : waiters_) asio::post(t->get_executor(), [t] { t->cancel(); });
}

events::Cursor Hub::head() const {
  std::lock_guard lock(mu_);
  return head_;
}

bool Hub::ready() const {
  std::lock_guard lock(mu_);
  return ready_;
}

std::size_t Hub::waiters() const {
  std::lock_guard lock(mu_);
  return waiters_.size();
}

std::size_t Hub::buffered() const {
  std::lock_guard lock(mu_);
  return ring_.size();
}

std::optional<Hub::MemoryPage> Hub::from_memory(events::Cursor after, const events::Filter& filter, int limit) const {
  std::lock_guard lock(mu_);
  if (!ready_ || after < base_) return std::nullopt;
  MemoryPage page;
  page.next = std::max(after, head_);
  auto it = std::upper_bound(ring_.begin(), ring_.end(), after,
                             [](const events::Cursor& c, const events::Recorded& e) { return c < e.cursor; });
  for (; it != ring_.end(); ++it) {
    if (!filter.matches(*it)) continue;
    page.events.push_back(*it);
    if (static_cast<int>(page.events.size()) >= limit) {
      page.next = it->cursor;
      break;
    }
  }
  return page;
}

asio::awaitable<void> Hub::wait(events::Cursor after, std::chrono::steady_clock::time_point deadline) {
  auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor, deadline);
  {
    std::lock_guard lock(mu_);
    if (head_ > after) co_return;
    waiters_.insert(timer);
  }
  co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
  std::lock_guard lock(mu_);
  waiters_.erase(timer);
}

}  // namespace platform::api
