#include "agent/log_tail.h"

#include <algorithm>
#include <fstream>
#include <system_error>

#include "agent/files.h"

namespace platform::agent {

namespace {
constexpr std::size_t kMaxLine = 16 * 1024;
constexpr std::size_t kMaxMarks = 4096;  // while shipping fails: the oldest go, their lines get later times
}

std::string valid_utf8(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  const std::size_t n = in.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && c != 0 && i + len <= n && !(len == 2 && c < 0xC2);
    for (std::size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xC0) == 0x80;
    if (ok && len == 3) {
      const unsigned cp = ((c & 0x0Fu) << 12) | ((p[i + 1] & 0x3Fu) << 6) | (p[i + 2] & 0x3Fu);
      ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
    }
    if (ok && len == 4) {
      const unsigned cp = ((c & 0x07u) << 18) | ((p[i + 1] & 0x3Fu) << 12) | ((p[i + 2] & 0x3Fu) << 6) | (p[i + 3] & 0x3Fu);
      ok = cp >= 0x10000 && cp <= 0x10FFFF;
    }
    if (ok) {
      out.append(in.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

LogTail::LogTail(std::string instance_id, std::string run, std::string stdout_path, std::string stderr_path)
    : instance_id_(std::move(instance_id)), run_(std::move(run)), out_{"stdout", std::move(stdout_path), 0, 0, {}},
      err_{"stderr", std::move(stderr_path), 0, 0, {}} {}

void LogTail::read_stream(Stream& s, bool final, std::size_t max_bytes, Json& out) {
  std::ifstream f(s.path, std::ios::binary);
  if (!f) return;
  f.seekg(s.offset);
  std::string buf(max_bytes, '\0');
  f.read(buf.data(), static_cast<std::streamsize>(max_bytes));
  buf.resize(static_cast<std::size_t>(f.gcount()));
  const auto read_at = std::chrono::system_clock::now();
  // The time of the first observation that had the byte at `offset`, else now.
  auto seen = [&, m = s.marks.begin()](std::int64_t offset) mutable {
    while (m != s.marks.end() && m->size <= offset) ++m;
    return utc_time(m == s.marks.end() ? read_at : m->at);
  };
  std::size_t start = 0;
  while (start < buf.size()) {
    auto nl = buf.find('\n', start);
    std::size_t end = nl == std::string::npos ? buf.size() : nl;
    if (end - start > kMaxLine) end = start + kMaxLine;          // a long line in pieces
    else if (nl == std::string::npos && !final) break;             // unfinished: wait for the rest
    out.push_back({{"instance_id", instance_id_}, {"run", run_}, {"stream", s.name},
                   {"offset", s.offset + static_cast<std::int64_t>(start)},
                   {"at", seen(s.offset + static_cast<std::int64_t>(start))},
                   {"message", valid_utf8(std::string_view(buf).substr(start, end - start))}});
    start = end < buf.size() && buf[end] == '\n' ? end + 1 : end;
  }
  s.next = s.offset + static_cast<std::int64_t>(start);
}

Json LogTail::read(bool final, std::size_t max_bytes) {
  Json out = Json::array();
  read_stream(out_, final, max_bytes / 2, out);
  read_stream(err_, final, max_bytes / 2, out);
  return out;
}

void LogTail::commit() {
  for (Stream* s : {&out_, &err_}) {
    s->offset = std::max(s->offset, s->next);
    std::erase_if(s->marks, [&](const Mark& m) { return m.size <= s->offset; });
  }
}

void LogTail::observe(std::chrono::system_clock::time_point now) {
  observe(out_, now);
  observe(err_, now);
}

void LogTail::observe(Stream& s, std::chrono::system_clock::time_point now) {
  std::error_code ec;
  const auto size = static_cast<std::int64_t>(std::filesystem::file_size(s.path, ec));
  if (ec) return;
  const auto known = s.marks.empty() ? s.offset : s.marks.back().size;
  if (size <= known) return;
  if (s.marks.size() >= kMaxMarks) s.marks.erase(s.marks.begin(), s.marks.begin() + kMaxMarks / 2);
  s.marks.push_back({size, now});
}

}  // namespace platform::agent
