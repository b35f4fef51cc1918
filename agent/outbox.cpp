#include "agent/outbox.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "agent/files.h"
#include "engine/ids.h"

namespace platform::agent {
namespace fs = std::filesystem;

namespace {
std::vector<std::string> report_files(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto name = e.path().filename().string();
    if (name.size() == 25 && name.ends_with(".json")) out.push_back(name);  // 20 digits + ".json"
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

Outbox::Outbox(std::string dir) : dir_(std::move(dir)) {
  fs::create_directories(dir_);
  auto files = report_files(dir_);
  if (!files.empty()) last_seq_ = std::stoll(files.back().substr(0, 20));
}

void Outbox::add(const std::string& instance_id, const std::string& type, Json data) {
  std::lock_guard lock(mu_);
  // Nanoseconds since the epoch, kept increasing: later reports sort after earlier ones, also across restarts.
  const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::system_clock::now().time_since_epoch()).count();
  last_seq_ = std::max(last_seq_ + 1, now);
  Json report = {{"event_id", uuid_to_string(new_uuid_v7())}, {"instance_id", instance_id}, {"seq", last_seq_},
                 {"type", type}, {"at", utc_now()}, {"data", std::move(data)}};
  write_atomically(fs::path(dir_) / fmt::format("{:020}.json", last_seq_), report.dump());
  cv_.notify_all();
}

Outbox::Batch Outbox::next(std::size_t max, std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  auto files = report_files(dir_);
  if (files.empty()) {
    cv_.wait_for(lock, wait);
    files = report_files(dir_);
  }
  Batch b;
  for (const auto& f : files) {
    if (b.files.size() >= max) break;
    auto doc = Json::parse(read_text(fs::path(dir_) / f), nullptr, false);
    b.files.push_back(f);
    if (doc.is_object()) b.reports.push_back(std::move(doc));  // a torn file is dropped with its batch
  }
  return b;
}

void Outbox::remove(const Batch& batch) {
  std::lock_guard lock(mu_);
  for (const auto& f : batch.files) {
    std::error_code ec;
    fs::remove(fs::path(dir_) / f, ec);
  }
}

std::size_t Outbox::pending() const {
  std::lock_guard lock(mu_);
  return report_files(dir_).size();
}

void Outbox::wake() { cv_.notify_all(); }

}  // namespace platform::agent
