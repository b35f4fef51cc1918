// Reading a run's log files: each line gets the time the agent first saw its bytes (the observation
// that had it), not the time of the once-a-second read that ships it; lines are shipped once.
#include "agent/log_tail.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "agent/files.h"

namespace fs = std::filesystem;
using namespace platform::agent;
using std::chrono::system_clock;

namespace {

struct Files {
  fs::path dir = fs::temp_directory_path() / ("log-tail-test-" + std::to_string(::getpid()));
  Files() { fs::create_directories(dir); }
  ~Files() { fs::remove_all(dir); }
  void append(const std::string& name, const std::string& text) const {
    std::ofstream(dir / name, std::ios::app | std::ios::binary) << text;
  }
};

system_clock::time_point at(int second) {
  return system_clock::from_time_t(1'795'000'000) + std::chrono::seconds(second);  // 2026-11-18
}

}  // namespace

TEST(LogTail, ALineIsTimedByTheFirstObservationThatHadIt) {
  Files f;
  LogTail tail("ins_1", "ins_1-r0", (f.dir / "out").string(), (f.dir / "err").string());
  f.append("out", "one\ntw");
  tail.observe(at(1));
  f.append("out", "o\nthree\n");
  f.append("err", "oops\n");
  tail.observe(at(2));
  tail.observe(at(3));  // nothing new: no new time
  f.append("out", "four\n");  // not observed before the read: the read's time
  const auto before_read = utc_now();
  auto lines = tail.read(false);
  ASSERT_EQ(lines.size(), 5u) << lines.dump();
  EXPECT_EQ(lines[0]["message"], "one");
  EXPECT_EQ(lines[0]["at"], utc_time(at(1)));
  EXPECT_EQ(lines[1]["message"], "two");  // its first bytes were there at 1
  EXPECT_EQ(lines[1]["at"], utc_time(at(1)));
  EXPECT_EQ(lines[2]["message"], "three");
  EXPECT_EQ(lines[2]["at"], utc_time(at(2)));
  EXPECT_EQ(lines[3]["message"], "four");
  EXPECT_GE(lines[3]["at"].get<std::string>(), before_read);
  EXPECT_EQ(lines[4]["stream"], "stderr");
  EXPECT_EQ(lines[4]["at"], utc_time(at(2)));

  // Shipped: nothing again, and later lines get their own times.
  tail.commit();
  EXPECT_TRUE(tail.read(false).empty());
  f.append("out", "five\n");
  tail.observe(at(9));
  lines = tail.read(false);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["at"], utc_time(at(9)));
  EXPECT_EQ(lines[0]["offset"], 19);  // after "one\ntwo\nthree\nfour\n"
}

TEST(LogTail, AReadThatWasNotShippedIsReadAgainWithTheSameTimes) {
  Files f;
  LogTail tail("ins_1", "ins_1-r0", (f.dir / "out").string(), (f.dir / "err").string());
  f.append("out", "a\nb\n");
  tail.observe(at(1));
  auto first = tail.read(false);
  auto again = tail.read(false);  // the API did not take the first: no commit
  EXPECT_EQ(first, again);
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[1]["at"], utc_time(at(1)));
}
