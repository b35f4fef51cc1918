#include "agent/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <set>
#include <vector>

#include "engine/error.h"

namespace platform::agent {
namespace {

[[noreturn]] void bad(const std::string& layer, const std::string& entry, const std::string& why) {
  throw PlatformError(ErrorCode::invalid_request,
                      "layer " + layer + ": entry \"" + entry.substr(0, 200) + "\" " + why,
                      "The image is malformed or hostile; rebuild it with a standard tool (docker build, buildah).");
}

// libarchive's message, which may be absent.
std::string archive_message(archive* a) {
  const char* m = archive_error_string(a);
  return m ? m : "unknown error";
}

[[noreturn]] void sys_fail(const std::string& what) {
  throw PlatformError(ErrorCode::internal, what + ": " + std::strerror(errno), "Check the agent's disk and permissions.");
}

struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (fd >= 0) ::close(fd);
    fd = o.fd;
    o.fd = -1;
    return *this;
  }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Opens `rel` (relative, may be empty) with every component, symlinks included, resolved inside root.
int open_in_root(int rootfd, const std::string& rel, std::uint64_t flags) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  return static_cast<int>(::syscall(SYS_openat2, rootfd, rel.empty() ? "." : rel.c_str(), &how, sizeof how));
}

// "./a//b/" -> {"a", "b"}; nullopt-like empty flag when a component is "..".
bool split_clean(const std::string& path, std::vector<std::string>& out) {
  out.clear();
  std::size_t i = 0;
  while (i <= path.size()) {
    auto j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    auto c = path.substr(i, j - i);
    if (c == "..") return false;
    if (!c.empty() && c != ".") out.push_back(c);
    i = j + 1;
  }
  return true;
}

std::string join(const std::vector<std::string>& parts, std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s += (i ? "/" : "") + parts[i];
  return s;
}

// Removes `name` in dirfd, recursively, never following a symlink.
void remove_at(int dirfd, const std::string& name) {
  struct stat st {};
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return;
    sys_fail("stat " + name);
  }
  if (S_ISDIR(st.st_mode)) {
    Fd sub(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (sub.fd < 0) sys_fail("open " + name);
    std::vector<std::string> children;
    {
      DIR* d = ::fdopendir(::dup(sub.fd));
      if (!d) sys_fail("read " + name);
      while (auto* e = ::readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) children.push_back(e->d_name);
      ::closedir(d);
    }
    for (const auto& c : children) remove_at(sub.fd, c);
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0) sys_fail("remove " + name);
  } else if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) {
    sys_fail("remove " + name);
  }
}

class Applier {
 public:
  Applier(const std::string& root, std::string layer) : layer_(std::move(layer)) {
    root_.fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_.fd < 0) sys_fail("open " + root);
  }

  void entry(archive* a, archive_entry* e) {
    const std::string raw = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
    std::vector<std::string> parts;
    if (!split_clean(raw, parts)) bad(layer_, raw, "has a \"..\" component (it would leave the image root)");
    if (parts.empty()) return;  // "./": the root itself
    const std::string leaf = parts.back();
    Fd parent = parent_dir(parts, raw);
    const std::string rel = join(parts, parts.size());
    if (leaf.rfind(".wh.", 0) == 0) return whiteout(parent.fd, parts, leaf);
    written_.insert(rel);
    const auto uid = static_cast<uid_t>(archive_entry_uid(e));
    const auto gid = static_cast<gid_t>(archive_entry_gid(e));
    const auto perm = static_cast<mode_t>(archive_entry_perm(e) & 07777);
    if (const char* target = archive_entry_hardlink(e)) return hardlink(parent.fd, leaf, raw, target);
    switch (archive_entry_filetype(e)) {
      case AE_IFDIR: return directory(parent.fd, leaf, rel, uid, gid, perm);
      case AE_IFLNK: return symlink(parent.fd, leaf, archive_entry_symlink(e) ? archive_entry_symlink(e) : "", uid, gid);
      case AE_IFREG: return file(a, e, parent.fd, leaf, uid, gid, perm);
      case AE_IFIFO:
        remove_at(parent.fd, leaf);
        if (::mknodat(parent.fd, leaf.c_str(), S_IFIFO | perm, 0) != 0) sys_fail("mkfifo " + rel);
        return;
      case AE_IFCHR:
      case AE_IFBLK: ++stats.skipped_devices; return;
      default: bad(layer_, raw, "has an unknown file type");
    }
  }

  LayerStats stats;

 private:
  // The entry's parent directory, created (0755) where missing, resolved inside the root.
  Fd parent_dir(const std::vector<std::string>& parts, const std::string& raw) {
    std::vector<std::string> dir(parts.begin(), parts.end() - 1);
    Fd d = ensure_dir(dir, raw, 0);
    // O_PATH descriptors cannot be read (fdopendir); reopen as a real directory.
    Fd real(::openat(d.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (real.fd < 0) sys_fail("open " + join(dir, dir.size()));
    return real;
  }

  // Makes `dir` (components below the root) exist as a directory, the way a container would see it:
  // through symlinks resolved inside the root, creating what a dangling link points to.
  Fd ensure_dir(const std::vector<std::string>& dir, const std::string& raw, int depth) {
    if (depth > 40) bad(layer_, raw, "goes through too many symbolic links");
    const auto rel = join(dir, dir.size());
    Fd fd(open_in_root(root_.fd, rel, O_PATH | O_DIRECTORY));
    if (fd.fd >= 0) return fd;
    if (errno != ENOENT && errno != ENOTDIR) {
      if (errno == EXDEV || errno == ELOOP) bad(layer_, raw, "goes through a link that cannot be resolved inside the root");
      sys_fail("open " + rel);
    }
    std::vector<std::string> up(dir.begin(), dir.end() - 1);
    Fd parent = ensure_dir(up, raw, depth + 1);
    const auto& name = dir.back();
    struct stat st {};
    if (::fstatat(parent.fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISLNK(st.st_mode)) {
        std::string target(4096, '\0');
        auto n = ::readlinkat(parent.fd, name.c_str(), target.data(), target.size());
        if (n < 0) sys_fail("readlink " + rel);
        target.resize(static_cast<std::size_t>(n));
        // The link's target, lexically, inside the root: ".." stops at the root as in RESOLVE_IN_ROOT.
        std::vector<std::string> resolved = target.rfind('/', 0) == 0 ? std::vector<std::string>{} : up;
        std::size_t i = 0;
        while (i <= target.size()) {
          auto j = target.find('/', i);
          if (j == std::string::npos) j = target.size();
          auto c = target.substr(i, j - i);
          if (c == "..") {
            if (!resolved.empty()) resolved.pop_back();
          } else if (!c.empty() && c != ".") {
            resolved.push_back(c);
          }
          i = j + 1;
        }
        ensure_dir(resolved, raw, depth + 1);
      } else if (!S_ISDIR(st.st_mode)) {
        remove_at(parent.fd, name);  // a lower layer's file where this layer has a directory
      }
    }
    if (::mkdirat(parent.fd, name.c_str(), 0755) != 0 && errno != EEXIST) sys_fail("mkdir " + rel);
    Fd again(open_in_root(root_.fd, rel, O_PATH | O_DIRECTORY));
    if (again.fd < 0) sys_fail("open " + rel);
    return again;
  }

  void whiteout(int parentfd, const std::vector<std::string>& parts, const std::string& leaf) {
    ++stats.whiteouts;
    const auto dir = join(parts, parts.size() - 1);
    if (leaf == ".wh..wh..opq") {
      // Opaque: what lower layers put in this directory disappears; this layer's own entries stay.
      std::vector<std::string> children;
      DIR* d = ::fdopendir(::dup(parentfd));
      if (!d) sys_fail("read " + dir);
      while (auto* e = ::readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) children.push_back(e->d_name);
      ::closedir(d);
      for (const auto& c : children)
        if (!written_.count(dir.empty() ? c : dir + "/" + c)) remove_at(parentfd, c);
      return;
    }
    const auto name = leaf.substr(4);
    if (name.empty() || name == "." || name == "..") bad(layer_, leaf, "is a whiteout of nothing");
    remove_at(parentfd, name);
  }

  void directory(int parentfd, const std::string& leaf, const std::string& rel, uid_t uid, gid_t gid, mode_t perm) {
    ++stats.directories;
    struct stat st {};
    if (::fstatat(parentfd, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
      remove_at(parentfd, leaf);
    if (::mkdirat(parentfd, leaf.c_str(), perm) != 0 && errno != EEXIST) sys_fail("mkdir " + rel);
    Fd d(::openat(parentfd, leaf.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (d.fd < 0) sys_fail("open " + rel);
    own(d.fd, uid, gid);
    if (::fchmod(d.fd, perm) != 0) sys_fail("chmod " + rel);
  }

  void symlink(int parentfd, const std::string& leaf, const std::string& target, uid_t uid, gid_t gid) {
    ++stats.symlinks;
    remove_at(parentfd, leaf);
    // The target is stored as written: it is only ever resolved inside the root (here and at run time).
    if (::symlinkat(target.c_str(), parentfd, leaf.c_str()) != 0) sys_fail("symlink " + leaf);
    if (::fchownat(parentfd, leaf.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0 && errno != EPERM)
      sys_fail("chown " + leaf);
  }

  void hardlink(int parentfd, const std::string& leaf, const std::string& raw, const std::string& target) {
    ++stats.hardlinks;
    std::vector<std::string> tparts;
    if (!split_clean(target, tparts) || tparts.empty())
      bad(layer_, raw, "is a hard link to \"" + target.substr(0, 200) + "\", outside the image root");
    Fd tparent = parent_dir(tparts, raw);
    struct stat st {};
    if (::fstatat(tparent.fd, tparts.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      bad(layer_, raw, "is a hard link to \"" + target.substr(0, 200) + "\", which does not exist in the image");
    if (S_ISDIR(st.st_mode)) bad(layer_, raw, "is a hard link to a directory");
    remove_at(parentfd, leaf);
    if (::linkat(tparent.fd, tparts.back().c_str(), parentfd, leaf.c_str(), 0) != 0) sys_fail("link " + raw);
  }

  void file(archive* a, archive_entry* e, int parentfd, const std::string& leaf, uid_t uid, gid_t gid, mode_t perm) {
    ++stats.files;
    remove_at(parentfd, leaf);
    Fd f(::openat(parentfd, leaf.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (f.fd < 0) sys_fail("create " + leaf);
    const void* buf = nullptr;
    std::size_t size = 0;
    la_int64_t offset = 0;
    for (;;) {
      int r = archive_read_data_block(a, &buf, &size, &offset);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
        bad(layer_, archive_entry_pathname(e) ? archive_entry_pathname(e) : "", "cannot be read: " + archive_message(a));
      const char* p = static_cast<const char*>(buf);
      std::size_t done = 0;
      while (done < size) {
        auto n = ::pwrite(f.fd, p + done, size - done, static_cast<off_t>(offset) + static_cast<off_t>(done));
        if (n < 0) sys_fail("write " + leaf);
        done += static_cast<std::size_t>(n);
      }
      stats.bytes += static_cast<std::int64_t>(size);
    }
    // Sparse files end with a hole: the size comes from the header.
    if (::ftruncate(f.fd, static_cast<off_t>(archive_entry_size(e))) != 0) sys_fail("truncate " + leaf);
    own(f.fd, uid, gid);
    if (::fchmod(f.fd, perm) != 0) sys_fail("chmod " + leaf);  // after chown, which clears setuid bits
    timespec times[2] = {{archive_entry_mtime(e), 0}, {archive_entry_mtime(e), 0}};
    ::futimens(f.fd, times);
  }

  static void own(int fd, uid_t uid, gid_t gid) {
    // Without root (a development machine) files keep the agent's owner.
    if (::fchown(fd, uid, gid) != 0 && errno != EPERM) sys_fail("chown");
  }

  Fd root_;
  std::string layer_;
  std::set<std::string> written_;  // paths this layer wrote (an opaque whiteout keeps them)
};

}  // namespace

LayerStats apply_layer(const std::string& root, const std::string& layer_path) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_filter_gzip(a.get());
  archive_read_support_filter_zstd(a.get());
  archive_read_support_filter_none(a.get());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  const auto name = layer_path.substr(layer_path.rfind('/') + 1);
  if (archive_read_open_filename(a.get(), layer_path.c_str(), 256 * 1024) != ARCHIVE_OK)
    throw PlatformError(ErrorCode::invalid_request,
                        "layer " + name + " is not a tar archive (plain, gzip or zstd): " +
                            archive_message(a.get()),
                        "The image is malformed; rebuild it with a standard tool.");
  Applier applier(root, name);
  for (;;) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
      throw PlatformError(ErrorCode::invalid_request,
                          "layer " + name + " is not a valid tar archive: " + archive_message(a.get()),
                          "The image is malformed; rebuild it with a standard tool.");
    applier.entry(a.get(), e);
  }
  return applier.stats;
}

}  // namespace platform::agent
