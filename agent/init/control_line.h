#pragma once
// The guest's end of the agent's control line (a virtio serial port; the agent's end is
// agent/vm_control.h). Line
// commands in, tagged so that many commands run at once (exec health checks beside `platform exec`):
//   "signal N"                       forwards signal N to the process (the agent's stop)
//   "run-begin T"                    starts describing command T (a tag without spaces)
//   "run-argv T A", "run-env T K=V"  its arguments in order, variables added to the process's env
//   "run-timeout T MS"               killed (with its process group) after MS; default 5000
//   "run-max-output T N"             output kept (stdout and stderr together); default 4096
//   "run-stdin T BASE64"             bytes for its stdin, in order (none: /dev/null)
//   "run-stream T"                   a session (`platform exec -i`): no timeout, input and output stream
//   "run-tty T ROWS COLS"            a session on a terminal of that size (`-it`)
//   "run-end T"                      runs it
//   "" (an empty line)               a new connection: answers still queued for the last one are dropped,
//                                    and its sessions killed
// and one answer per command, a header line and the output's bytes:
//   "run-result T <exit code> <timed out 0|1> <truncated 0|1> <bytes>\n<output>"
// The exit code is -1 when it timed out or could not start; 128+N when signal N killed it.
// A session's output instead streams as it comes, within the window the host grants (256 KiB at
// first), and its run-result carries none:
//   "run-output T <bytes>\n<bytes>"
// while the host sends, for a running session:
//   "run-input T BASE64"             bytes for its stdin      "run-eof T"      the end of them
//   "run-resize T ROWS COLS"         its terminal's new size  "run-kill T"     SIGKILL to it
//   "run-window T N"                 N more bytes of output may come
// Plain libc and the standard library: PID 1 is a static binary.
#include <poll.h>
#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace platform::init {

// At most this many commands run at once; more are answered at once with an error.
constexpr std::size_t kMaxRuns = 16;

// Starts a command: argv, the env to add, its stdin (a fd, or -1 for /dev/null) and its stdout+stderr.
// Returns the child's pid (it leads its own process group), or -1.
using Spawn = std::function<pid_t(const std::vector<std::string>& argv, const std::vector<std::string>& env, int in, int out)>;

// The process that serves the line ignores SIGPIPE: a command that stops reading its stdin costs the
// write an EPIPE.
class ControlLine {
 public:
  ControlLine(int fd, pid_t process, Spawn spawn);

  // The descriptors to poll (appended to `fds`), and how long the poll may sleep (-1: no deadline).
  void add_polls(std::vector<pollfd>& fds) const;
  int poll_timeout_ms() const;
  // After poll: reads commands, feeds stdin, collects output, kills what ran out of time, answers.
  // `fds` from add_polls' first entry on.
  void handle(const pollfd* fds, std::size_t n);
  // A child was reaped: true when it was one of the commands (then answered).
  bool reaped(pid_t pid, int status);
  void kill_all();  // the VM is going down
  // The host's end connected (SIGIO from the virtio port): read the line again at once.
  void host_changed() { away_until_ = 0; }

 private:
  struct Pending {
    std::vector<std::string> argv, env;
    long timeout_ms = 5000;
    std::size_t max_output = 4096;
    std::string input;
    bool stream = false;
    int rows = 0, cols = 0;  // a terminal (with stream)
  };
  struct Run {
    std::string tag;
    pid_t pid = -1;
    int out = -1, in = -1;  // with a terminal both are its master side (closed once, as `out`)
    long deadline = 0;      // 0: none (a session)
    std::size_t max_output = 4096;
    std::string output, input;
    std::size_t input_at = 0;
    bool truncated = false;
    bool stream = false, tty = false, eof = false;  // eof: close its stdin once `input` is written
    std::size_t window = 0;  // output the host takes now (a session)
  };

  void command(const std::string& line);
  void session_command(const std::string& key, const std::string& tag, const std::string& value);
  void start(const std::string& tag, Pending p);
  void start_session(const std::string& tag, Pending p);
  void drain(Run& r);
  void stream_out(Run& r, bool all);
  void feed(Run& r);
  void finish(std::size_t i, int code, bool timed_out);
  void answer(const std::string& tag, int code, bool timed_out, bool truncated, const std::string& output);
  void flush();

  int fd_;
  pid_t process_;
  Spawn spawn_;
  std::string in_, out_;  // bytes read and not yet a whole line; answers, written up to out_at_
  std::size_t out_at_ = 0;
  // Nobody is at the host's end: the port then reads as ended and polls as hung up, at once, so it is
  // left out of the poll until SIGIO says the host connected (or, at the latest, this time).
  long away_until_ = 0;
  std::map<std::string, Pending> pending_;
  std::vector<Run> runs_;
};

// RFC 4648 base64 (padding optional); false on a character outside the alphabet.
bool base64_decode(const std::string& text, std::string& out);

}  // namespace platform::init
