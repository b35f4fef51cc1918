#include "platformd/machine_name.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <utility>

namespace platform::dev {

MachineName::MachineName(const std::string& name) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);  // not inherited by children
  if (fd < 0) return;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::size_t n = std::min<std::size_t>(name.size(), 100);
  std::memcpy(a.sun_path + 1, name.data(), n);  // sun_path[0] = 0: the abstract namespace
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n)) == 0)
    fd_ = fd;
  else
    ::close(fd);
}

MachineName::~MachineName() {
  if (fd_ >= 0) ::close(fd_);
}

MachineName::MachineName(MachineName&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

}  // namespace platform::dev
