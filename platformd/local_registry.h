#pragma once
// An OCI registry owned by a state folder: Debian's docker-registry (distribution 2.8) with the project's
// own config (filesystem storage in the state folder, 127.0.0.1 only, deletes enabled, no auth unless
// the tests ask for token auth), started
// as a child process and stopped with SIGTERM. Used by `platformd dev` and the tests.
#include <sys/types.h>

#include <string>

namespace platform::dev {

struct LocalRegistryOptions {
  std::string dir;   // holds config.yml, data/ and registry.log
  int port = 5000;   // 127.0.0.1:port
  // An "auth:" section for config.yml (the tests' token-auth registry); empty: no auth.
  std::string auth_config;
};

class LocalRegistry {
 public:
  explicit LocalRegistry(LocalRegistryOptions options);
  ~LocalRegistry();  // stops the registry if this object started it

  void start();  // writes the config, starts the registry, waits until GET /v2/ answers 200
  void stop();
  bool alive();
  pid_t pid() const { return pid_; }
  std::string address() const;  // "127.0.0.1:<port>"
  std::string log_file() const;

 private:
  LocalRegistryOptions options_;
  pid_t pid_ = -1;
};

}  // namespace platform::dev
