#pragma once
// For a forked child: replaces the process with argv[0] (an absolute path) and its arguments, or exits
// with 127 (the shell's "command not found") when that fails. Never returns.
#include <unistd.h>

#include <string>
#include <vector>

namespace platform {

[[noreturn]] inline void exec_or_exit(std::vector<std::string> argv) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  ::execv(args[0], args.data());
  ::_exit(127);
}

}  // namespace platform
