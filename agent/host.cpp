#include "agent/host.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/microvm_runtime.h"
#include "agent/sandbox.h"
#include "engine/error.h"
#include "engine/version.h"

namespace platform::agent {
namespace fs = std::filesystem;

namespace {

std::int64_t mem_total_mib() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemTotal:") return kib / 1024;
  return 0;
}

// /dev/kvm can exist without running guests (nested virtualisation without vmx/svm exposed: QEMU
// with -enable-kvm then spins and never boots, DESIGN.md section 13). KVM counts only when the CPU
// flags say hardware virtualisation is there too.
bool kvm_runs_guests(std::string& why) {
  if (::access("/dev/kvm", R_OK | W_OK) != 0) {
    why = "/dev/kvm not usable";
    return false;
  }
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("flags", 0) == 0) {
      std::istringstream words(line);
      for (std::string w; words >> w;)
        if (w == "vmx" || w == "svm") {
          why = "/dev/kvm usable (" + w + ")";
          return true;
        }
      break;
    }
  why = "/dev/kvm present but the CPU shows no vmx/svm (nested virtualisation cannot run guests; TCG instead)";
  return false;
}

std::string first_existing(std::initializer_list<const char*> paths) {
  for (const char* p : paths)
    if (::access(p, X_OK) == 0) return p;
  return "";
}

}  // namespace

RuntimeChoice choose_runtime(const std::string& wanted, const GuestKit& guest) {
  const auto runc = first_existing({"/usr/sbin/runc", "/usr/bin/runc"});
  const auto qemu = first_existing({"/usr/bin/qemu-system-x86_64"});
  RuntimeChoice c;
  std::string kvm_why;
  c.kvm = kvm_runs_guests(kvm_why);
  c.detected = {{"runc", runc}, {"qemu", qemu}, {"kvm", c.kvm}, {"guest_kernel", guest.kernel}};
  bool sandbox_ok = false, vm_ok = false;
  const auto sandbox_why = runc.empty() ? std::string("runc is not installed (apt-get install runc)") : Sandbox::probe(runc, &sandbox_ok);
  MicroVmRuntime::Options vm;
  vm.qemu = qemu.empty() ? "/usr/bin/qemu-system-x86_64" : qemu;
  vm.guest = guest;
  vm.kvm = c.kvm;
  const auto vm_why = MicroVmRuntime::probe(vm, &vm_ok);
  auto pick = [&](const std::string& name, const std::string& reason) {
    c.name = name;
    c.reason = reason;
    return c;
  };
  if (wanted == "microvm")
    return vm_ok ? pick("microvm", "asked for (--runtime microvm): " + vm_why)
                 : pick("none", "--runtime microvm, but microVMs cannot run here: " + vm_why);
  if (wanted == "sandbox")
    return sandbox_ok ? pick("sandbox", "asked for (--runtime sandbox): " + sandbox_why +
                                            "; a sandbox shares the host's kernel (weaker isolation than a microVM)")
                      : pick("none", "--runtime sandbox, but runc containers cannot run here: " + sandbox_why);
  if (vm_ok && c.kvm) return pick("microvm", "a microVM per instance (its own kernel): " + vm_why);
  if (sandbox_ok)
    return pick("sandbox", "runc containers (" + sandbox_why + "), because microVMs " +
                               (vm_ok ? "would run under TCG emulation here (" + kvm_why +
                                            "), too slow to serve; --runtime microvm uses them anyway"
                                      : "cannot run here: " + vm_why) +
                               "; a sandbox shares the host's kernel (weaker isolation than a microVM)");
  if (vm_ok) return pick("microvm", "microVMs under TCG emulation (" + kvm_why + "), because " + sandbox_why + ": " + vm_why);
  return pick("none", "no runtime can run instances here: microVMs: " + vm_why + "; sandbox: " + sandbox_why);
}

Json host_report(const std::string& state_dir, const RuntimeChoice& runtime) {
  struct statvfs fsinfo {};
  std::int64_t disk_mib = 0;
  if (::statvfs(state_dir.c_str(), &fsinfo) == 0)
    disk_mib = static_cast<std::int64_t>(fsinfo.f_bavail) * static_cast<std::int64_t>(fsinfo.f_frsize) / (1024 * 1024);
  return {{"capacity",
           {{"cpus", static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN))},
            {"memory_mib", mem_total_mib()},
            {"disk_mib", disk_mib}}},
          {"runtime", {{"name", runtime.name},
                       {"reason", runtime.reason.substr(0, 4000)},
                       {"instance_overhead_mib", runtime.name == "microvm" ? MicroVmRuntime::kGuestOverheadMib : 0},
                       {"detected", runtime.detected}}},
          {"agent_version", build_info().version}, {"agent_commit", build_info().commit}};
}

std::string default_host_name() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  std::string out;
  for (char c : std::string(buf)) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) out.push_back(c);
    else if (!out.empty() && out.back() != '-') out.push_back('-');
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  if (out.empty() || !(out[0] >= 'a' && out[0] <= 'z')) out = "host-" + out;
  return out.substr(0, 63);
}

}  // namespace platform::agent
