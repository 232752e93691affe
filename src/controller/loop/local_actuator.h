// LocalActuator: the controller's actuator on one machine — prefill and decode workers are
// `tandem worker` child processes of this one. Scale-out starts processes; scale-in picks the
// newest worker of the role, drains it through the router (no new work, in-flight requests
// finish, KV it still has to send is sent) and only then stops it. With `role_change` set, a
// rebalance (one role up, the other down) flips a drained worker's role instead of stopping one
// process and starting another: no model reload. A rebalance that arrives as two decisions (a
// scale-in, then a scale-out of the other role while the first worker still drains) flips that
// worker too, while it drains or for flip_grace after.
//
// Thread-safe. Draining and starting happen on background threads; Apply returns at once.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "common/child_process.h"
#include "controller/core/actuator.h"
#include "controller/loop/admin_client.h"

namespace tandem::controller {

struct LocalActuatorOptions {
  std::string tandem_binary;              // the `tandem` executable (ChildProcess::SelfPath())
  std::vector<std::string> worker_flags;  // passed to every `tandem worker` (--router, --model, ...)
  absl::Duration start_timeout = absl::Seconds(120);  // until a new worker prints its ports
  absl::Duration drain_timeout = absl::Seconds(120);  // a draining worker's in-flight work
  absl::Duration stop_grace = absl::Seconds(30);      // SIGTERM → SIGKILL
  bool role_change = false;
  // role_change: a worker drained to stop waits this long for a scale-out of the other role to
  // claim it (a rebalance that arrives as two decisions) before it stops.
  absl::Duration flip_grace = absl::Seconds(10);
  // A worker that exits without being asked to is replaced by a new one of its role (`tandem up`):
  // at once the first time, then after 1 s, 2 s, 4 s ... up to `restart_backoff_max` while it
  // keeps crashing within `crash_window` of its start. Off: it is only reported
  // (TakeUnexpectedExits) and the controller replaces it.
  bool restart_crashed = false;
  absl::Duration restart_backoff_max = absl::Seconds(30);
  absl::Duration crash_window = absl::Seconds(60);
};

class LocalActuator final : public Actuator {
 public:
  // `admin` talks to the router; it must outlive the actuator.
  LocalActuator(LocalActuatorOptions options, AdminClient* admin);
  ~LocalActuator() override;  // stops every worker (drained first)

  std::string name() const override { return options_.role_change ? "local+role-change" : "local"; }
  absl::StatusOr<InstanceCounts> Current() override;
  absl::Status Apply(const InstanceCounts& target) override;
  std::vector<std::string> Draining() const override;

  // Starts one worker of `role` now and waits until it has printed its ports (tandem up's first
  // workers). Error if it does not start.
  absl::Status StartAndWait(Role role);

  struct Process {
    std::string worker_id;
    std::string role;   // prefill, decode; "draining" or "changing" while in transition
    int pid = 0;
    std::string grpc;   // 127.0.0.1:port once started
    std::string http;
  };
  std::vector<Process> Processes() const;
  // Workers that exited without being asked to since the last call (their ids). Also starts
  // the restarts that are due (restart_crashed): call it every few hundred milliseconds.
  std::vector<std::string> TakeUnexpectedExits();
  int restarts() const;  // workers started again after a crash, in all
  // Drains and stops every worker, waiting for all of it.
  void StopAll();

 private:
  struct Worker {
    std::string id;
    Role role;
    enum class State { kStarting, kRunning, kDraining, kChanging, kStopped } state = State::kStarting;
    std::unique_ptr<ChildProcess> process;
    std::string grpc, http;
    int64_t seq = 0;
    absl::Time started = absl::Now();
    // A worker draining to stop that a later scale-up of the other role claimed (role_change):
    // when its drain ends it flips to this role instead of stopping. `stopping`: too late.
    std::optional<Role> flip_to;
    bool stopping = false;
  };
  struct PendingRestart {
    Role role;
    std::string id;  // of the worker that crashed
    absl::Time at;
  };

  absl::StatusOr<std::shared_ptr<Worker>> Spawn(Role role);  // mu_ held
  // Waits on a background thread for `w` to print its ports; stops it if it does not. mu_ held.
  void AwaitInBackground(std::shared_ptr<Worker> w);
  void ScheduleRestart(const Worker& w);  // mu_ held
  void StartDueRestarts();                // mu_ held
  // Reads the new worker's "worker <id> grpc_port=.. http_port=.." line.
  static absl::Status AwaitStarted(Worker& w, absl::Duration timeout, std::mutex& mu);
  std::shared_ptr<Worker> PickVictim(Role role);  // mu_ held: newest running or starting of `role`
  void DrainAndStop(std::shared_ptr<Worker> w);
  void DrainAndFlip(std::shared_ptr<Worker> w, Role to);
  void FinishFlip(const std::shared_ptr<Worker>& w, Role to);  // after the drain: set the role
  // role_change: a worker draining to stop, of the role other than `to`, that can flip instead
  // (mu_ held); null if none.
  std::shared_ptr<Worker> ClaimDrainingFor(Role to);
  void Reap();  // mu_ held: joins finished background threads, notes unexpected exits

  const LocalActuatorOptions options_;
  AdminClient* admin_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Worker>> workers_;
  std::vector<std::string> unexpected_exits_;
  std::vector<PendingRestart> restarts_;
  std::map<Role, CrashBackoff> backoff_;  // crashes soon after start, per role
  int restarted_ = 0;
  bool stopping_ = false;
  struct Background {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  void RunInBackground(std::function<void()> fn);  // mu_ held
  std::vector<Background> threads_;
  int64_t next_seq_ = 0;
  std::map<Role, int> next_index_;
};

}  // namespace tandem::controller
