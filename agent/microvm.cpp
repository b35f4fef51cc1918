#include "agent/microvm.h"

#include <archive.h>
#include <archive_entry.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "agent/files.h"
#include "engine/error.h"
#include "engine/exec.h"

namespace platform::agent {
namespace fs = std::filesystem;

namespace {

struct Writer {
  archive* a = archive_write_new();
  ~Writer() { archive_write_free(a); }
  [[noreturn]] void fail(const std::string& what) const {
    const char* e = archive_error_string(a);
    throw PlatformError(ErrorCode::internal, what + ": " + (e ? e : "unknown error"), "");
  }
  void add(const std::string& name, const struct stat& st, const std::string& data, const std::string& link = {}) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_copy_stat(e, &st);
    if (!link.empty()) archive_entry_set_symlink(e, link.c_str());
    archive_entry_set_size(e, S_ISREG(st.st_mode) ? static_cast<la_int64_t>(data.size()) : 0);
    if (archive_write_header(a, e) != ARCHIVE_OK) {
      archive_entry_free(e);
      fail("cannot add " + name + " to the initramfs");
    }
    if (S_ISREG(st.st_mode) && !data.empty() &&
        archive_write_data(a, data.data(), data.size()) != static_cast<la_ssize_t>(data.size())) {
      archive_entry_free(e);
      fail("cannot write " + name + " into the initramfs");
    }
    archive_entry_free(e);
  }
};

struct stat file_stat(mode_t mode, std::size_t size) {
  struct stat st {};
  st.st_mode = mode;
  st.st_size = static_cast<off_t>(size);
  st.st_nlink = 1;
  return st;
}

}  // namespace

void build_initramfs(const std::string& rootfs, const std::string& init, const GuestProcess& p,
                     const std::string& out_path) {
  Writer w;
  archive_write_set_format_cpio_newc(w.a);
  if (archive_write_open_filename(w.a, out_path.c_str()) != ARCHIVE_OK) w.fail("cannot create " + out_path);
  for (auto it = fs::recursive_directory_iterator(rootfs); it != fs::recursive_directory_iterator(); ++it) {
    const auto rel = fs::relative(it->path(), rootfs).string();
    if (rel == "init" || rel == "platform" || rel.rfind("platform/", 0) == 0) continue;  // ours
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) w.add(rel, st, "", fs::read_symlink(it->path()).string());
    else if (S_ISREG(st.st_mode)) w.add(rel, st, read_text(it->path()));
    else if (S_ISDIR(st.st_mode)) w.add(rel, st, "");
  }
  std::string run;
  for (const auto& a : p.argv) run += "argv " + a + "\n";
  for (const auto& [k, v] : p.env) run += "env " + k + "=" + v + "\n";
  run += "dir " + p.workdir + "\nuid " + std::to_string(p.uid) + "\ngid " + std::to_string(p.gid) + "\n";
  const auto init_bytes = read_text(init);
  if (init_bytes.empty()) throw PlatformError(ErrorCode::internal, "platform-init is missing at " + init, "Build it: scripts/setup.");
  w.add("init", file_stat(S_IFREG | 0755, init_bytes.size()), init_bytes);
  w.add("platform", file_stat(S_IFDIR | 0755, 0), "");
  w.add("platform/run", file_stat(S_IFREG | 0644, run.size()), run);
  if (archive_write_close(w.a) != ARCHIVE_OK) w.fail("cannot finish " + out_path);
}

namespace {
// The host CPU's clock in kHz ("cpu MHz" of /proc/cpuinfo), for the guest's TSC. Under TCG the guest's
// early TSC calibration against the PIT sometimes fails (timing too noisy), and a microvm has no HPET or
// PM timer to fall back on: the kernel then hangs. Giving it the frequency skips the calibration.
long host_tsc_khz() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("cpu MHz", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return static_cast<long>(std::stod(line.substr(colon + 1)) * 1000);
    }
  return 2'000'000;
}
}  // namespace

MicroVmResult run_microvm(const MicroVmOptions& o) {
  const auto cmdline = "console=ttyS0 quiet panic=-1 reboot=t tsc_early_khz=" + std::to_string(host_tsc_khz());
  std::vector<std::string> argv = {o.qemu, "-M", "microvm", "-m", std::to_string(o.memory_mib) + "M",
                                   "-no-reboot", "-nodefaults", "-no-user-config", "-display", "none",
                                   "-serial", "file:" + o.console_path, "-kernel", o.kernel, "-initrd", o.initramfs,
                                   "-append", cmdline};
  if (o.kvm) argv.insert(argv.end(), {"-enable-kvm", "-cpu", "host"});
  else argv.insert(argv.end(), {"-accel", "tcg", "-cpu", "max"});
  pid_t pid = ::fork();
  if (pid == 0) {
    exec_or_exit(argv);
  }
  MicroVmResult r;
  const auto deadline = std::chrono::steady_clock::now() + o.timeout;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      r.timed_out = true;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  r.console = read_text(o.console_path);
  static const std::regex ended(R"(platform-init: (exited with status (\d+)|killed by signal (\d+)))");
  for (auto it = std::sregex_iterator(r.console.begin(), r.console.end(), ended); it != std::sregex_iterator(); ++it) {
    const auto& m = *it;
    r.exit_code = m[2].matched ? std::stoi(m[2].str()) : 128 + std::stoi(m[3].str());
  }
  return r;
}

}  // namespace platform::agent
