#pragma once
// The boot steps of platform-init (PID 1 of a microVM), each saying on the console what went wrong:
// mounts, kernel modules, the network, the memory cgroup, the secrets file. Plain libc: PID 1 is a
// static binary with no libraries.
#include <sys/types.h>

#include <string>
#include <vector>

namespace platform::init {

// What /platform/run says (agent/microvm.h writes it): one "key value" per line, argv lines in order.
struct RunFile {
  std::vector<std::string> argv, env, modules;
  std::string dir = "/";
  uid_t uid = 0;
  gid_t gid = 0;
  long memory_mib = 0;                 // 0: no limit
  std::string guest_cidr, gateway;     // "10.255.255.2/30", "10.255.255.1"; empty: no network
  std::string address;                 // the instance's own address (eth0:1, a /32), where the edge reaches it
  std::string hostname;                // set with sethostname; empty: none
  bool serial_stdio = false;           // "stdio serial": stdout on ttyS1, stderr on ttyS2, and the control port
};
RunFile read_run(const char* path);

void say(const std::string& line);  // "platform-init: <line>" on the console

void mount_basics();                                   // /proc, /sys, /dev, /tmp, /run
void load_modules(const std::vector<std::string>& paths);  // finit_module each, in order
// Sets the host name; brings lo up and, when the run file gives an address, eth0 with it and a default
// route, and the instance's address beside it.
void setup_network(const RunFile& run);
// A cgroup "app" with memory.max; the process and exec commands join it. False when unavailable.
bool setup_memory_cgroup(long memory_mib);
void join_app_cgroup(pid_t pid);
bool app_cgroup_oom_killed();  // memory.events says oom_kill > 0
// /platform/secrets -> /run/platform/secrets, read-only, readable by the process's user.
void mount_secrets(uid_t uid, gid_t gid);
// Opens a serial port in raw mode (no echo, no newline translation); -1 when it is not there.
int open_serial(const char* path, int flags);
// Opens the virtio serial port called `name` (non-blocking), waiting up to `wait_ms` for it to appear
// once its module is loaded; -1 when it does not.
int open_virtio_port(const std::string& name, int wait_ms);

}  // namespace platform::init
