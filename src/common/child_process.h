// Child processes for launchers (`tandem up`, the controller's local actuator): spawn with the
// child's stdout captured line by line, signal, wait with a timeout. The children run the same
// `tandem` binary with another subcommand.
//
// Thread-compatible: one owner per ChildProcess.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tandem {

// For a process started by ChildProcess::Spawn, which names its parent in TANDEM_PARENT_PID
// (`parent_pid_env`, that variable's value; empty: not a spawned child, nothing done): stop
// when that parent is gone, so that `kill -9` of a launcher leaves no orphan holding its ports.
// Starts a thread that polls the parent id every 250 ms; when it changes, SIGTERM to this
// process (its own graceful stop) and, 5 s later, exit.
void DieWithParent(const std::string& parent_pid_env);

// How long to wait before starting a crashed child again: at once the first time, then 1 s,
// 2 s, 4 s ... up to `max` while it keeps crashing within `window` of its start. One per thing
// restarted (a process, or a role whose workers are replaced). Thread-compatible.
class CrashBackoff {
 public:
  CrashBackoff(absl::Duration max = absl::Seconds(30), absl::Duration window = absl::Minutes(1))
      : max_(max), window_(window) {}
  // A crash of what was started at `started`, noticed at `now`: the delay before the restart.
  absl::Duration Next(absl::Time started, absl::Time now);
  int streak() const { return streak_; }  // crashes in a row, this one included

 private:
  absl::Duration max_, window_;
  int streak_ = 0;
};

// The key=value words of a child's status line ("worker prefill-0 grpc_port=5 http_port=6").
std::map<std::string, std::string> ParseStatusFields(const std::string& line);

class ChildProcess {
 public:
  // Starts argv[0] (a path) with `argv` and our environment plus `extra_env` ("NAME=value"
  // entries, which win over ours: the way to hand a child a secret without putting it on its
  // command line); its stdout is readable with ReadLine, its stderr is ours. The child also
  // gets TANDEM_PARENT_PID (see DieWithParent).
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const std::vector<std::string>& argv,
                                                             const std::vector<std::string>& extra_env = {});
  ~ChildProcess();  // kills (SIGKILL) and reaps a child that is still running

  pid_t pid() const { return pid_; }
  // The next line of the child's stdout (without the newline), waiting up to `timeout`.
  // NotFound at end of output, DeadlineExceeded on timeout.
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout);
  void Signal(int sig);
  // Whether the child is still running (reaps it if it exited).
  bool Running();
  // Waits up to `timeout` for the child to exit; its exit status (or -signal), or
  // DeadlineExceeded.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
  int Stop(absl::Duration grace);
  // The path of the running executable (/proc/self/exe).
  static std::string SelfPath();

 private:
  ChildProcess(pid_t pid, int stdout_fd) : pid_(pid), stdout_fd_(stdout_fd) {}
  pid_t pid_;
  int stdout_fd_;
  std::string buffer_;
  bool reaped_ = false;
  int status_ = 0;
};

}  // namespace tandem
