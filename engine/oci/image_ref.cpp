#include "engine/oci/image_ref.h"

#include <algorithm>
#include <cctype>

#include "engine/error.h"

namespace platform::oci {
namespace {

constexpr const char* kForm =
    "Write an image as [registry/]repository[:tag][@sha256:digest], e.g. 127.0.0.1:7071/sample/echo:v1.";

[[noreturn]] void bad(const std::string& text, const std::string& why) {
  throw PlatformError(ErrorCode::invalid_request, "invalid image reference \"" + text.substr(0, 200) + "\": " + why,
                      kForm);
}

bool lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// A path component: lowercase alphanumerics separated by one '.', one or two '_', or any number of '-'.
bool valid_component(const std::string& c) {
  if (c.empty() || !lower_alnum(c.front()) || !lower_alnum(c.back())) return false;
  for (std::size_t i = 0; i < c.size(); ++i) {
    char ch = c[i];
    if (lower_alnum(ch) || ch == '-') continue;
    if (ch == '.' && c[i + 1] != '.') continue;
    if (ch == '_') {
      if (c[i + 1] == '_') ++i;
      if (c[i + 1] == '_') return false;
      continue;
    }
    return false;
  }
  return true;
}

bool valid_tag(const std::string& t) {
  if (t.empty() || t.size() > 128) return false;
  if (!(std::isalnum(static_cast<unsigned char>(t[0])) || t[0] == '_')) return false;
  return std::all_of(t.begin(), t.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

bool valid_host(const std::string& h) {
  if (h.empty() || h.size() > 255) return false;
  if (h.front() == '[') return h.find(']') != std::string::npos;  // [::1]:5000
  return std::all_of(h.begin(), h.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':';
  });
}

}  // namespace

bool valid_digest(const std::string& d) {
  if (d.size() != 7 + 64 || d.rfind("sha256:", 0) != 0) return false;
  return std::all_of(d.begin() + 7, d.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

ImageRef parse_image_ref(const std::string& text) {
  if (text.empty()) bad(text, "it is empty");
  if (text.size() > 512) bad(text, "it is longer than 512 characters");
  for (char c : text)
    if (std::isspace(static_cast<unsigned char>(c)) || !std::isprint(static_cast<unsigned char>(c)))
      bad(text, "it contains whitespace or control characters");
  ImageRef r;
  std::string rest = text;
  if (auto at = rest.find('@'); at != std::string::npos) {
    r.digest = rest.substr(at + 1);
    rest.resize(at);
    if (!valid_digest(r.digest)) bad(text, "the digest is not sha256: followed by 64 lowercase hex digits");
  }
  // The first component is a registry host when it looks like one (a dot, a port, or localhost).
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    std::string first = rest.substr(0, slash);
    if (first.find('.') != std::string::npos || first.find(':') != std::string::npos || first == "localhost" ||
        first.front() == '[') {
      if (!valid_host(first)) bad(text, "\"" + first + "\" is not a registry host");
      r.registry = first;
      rest = rest.substr(slash + 1);
    }
  }
  if (r.registry.empty()) r.registry = "docker.io";
  if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    r.tag = rest.substr(colon + 1);
    rest.resize(colon);
    if (!valid_tag(r.tag))
      bad(text, "the tag \"" + r.tag.substr(0, 80) + "\" is not 1-128 letters, digits, '_', '.' or '-'");
  }
  if (rest.empty()) bad(text, "the repository name is missing");
  std::size_t start = 0;
  for (;;) {
    auto end = rest.find('/', start);
    if (!valid_component(rest.substr(start, end == std::string::npos ? std::string::npos : end - start)))
      bad(text, "the repository \"" + rest.substr(0, 200) +
                    "\" must be lowercase letters and digits, separated by '/', '.', '_' or '-'");
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (r.registry == "docker.io" && rest.find('/') == std::string::npos) rest = "library/" + rest;
  r.repository = rest;
  if (r.tag.empty() && r.digest.empty()) r.tag = "latest";
  return r;
}

std::string ImageRef::api_host() const {
  if (registry == "docker.io" || registry == "index.docker.io") return "registry-1.docker.io";
  return registry;
}

bool ImageRef::loopback() const {
  std::string host = registry;
  if (!host.empty() && host.front() == '[') {
    host = host.substr(1, host.find(']') - 1);
  } else if (auto colon = host.rfind(':'); colon != std::string::npos) {
    host.resize(colon);
  }
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::string ImageRef::str() const {
  std::string s = registry + "/" + repository;
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

}  // namespace platform::oci
