// LocalActuator: the controller's actuator on one machine — prefill and decode workers are
// `tandem worker` child processes of this one. Scale-out starts processes; scale-in picks the
// least busy worker of the role (then the newest), drains it through the router (no new work,
// in-flight requests finish, KV it still has to send is sent) and only then stops it.
// A rebalance (one role up, the other down) moves workers by `rebalance_by` (role_move.h): a
// flip drains a worker and changes its role (no model reload), a restart stops it and starts a
// new one; `kCost` picks, per move, whichever the start-up and drain times this actuator has
// measured predict is serving first. A rebalance that arrives as two decisions (a scale-in,
// then a scale-out of the other role while the first worker still drains) can flip that worker
// too, while it drains or for flip_grace after. TakeReport says how each move was made and why.
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
#include "common/strings.h"
#include "controller/core/actuator.h"
#include "controller/core/role_move.h"
#include "controller/loop/admin_client.h"

namespace tandem::controller {

struct LocalActuatorOptions {
  std::string tandem_binary;              // the `tandem` executable (ChildProcess::SelfPath())
  std::vector<std::string> worker_flags;  // passed to every `tandem worker` (--router, --model, ...)
  absl::Duration start_timeout = absl::Seconds(120);  // until a new worker prints its ports
  absl::Duration drain_timeout = absl::Seconds(120);  // a draining worker's in-flight work
  absl::Duration stop_grace = absl::Seconds(30);      // SIGTERM → SIGKILL
  RebalanceBy rebalance_by = RebalanceBy::kRestart;
  // flip or cost: a worker drained to stop waits this long for a scale-out of the other role to
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

  std::string name() const override { return StrCat("local+", RebalanceByName(options_.rebalance_by)); }
  absl::StatusOr<InstanceCounts> Current() override;
  absl::Status Apply(const InstanceCounts& target) override;
  std::vector<std::string> Draining() const override;
  ActuationReport TakeReport() override;
  MoveCosts costs() const;  // what this actuator has measured so far

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
    // A worker draining to stop that a later scale-up of the other role claimed (flip or cost):
    // when its drain ends it flips to this role instead of stopping. `stopping`: too late.
    std::optional<Role> flip_to;
    bool stopping = false;
    // Its drain (to stop or to flip): the role it drained from, when, whether it had work then,
    // and whether the drain has ended.
    Role drain_from = Role::kPrefill;
    absl::Time drain_started;
    bool drain_busy = true;
    bool drained = false;
    int64_t drain_apply = 0;      // the Apply that began it
    int64_t declined_apply = -1;  // the last Apply whose scale-out chose to restart rather than claim it
  };
  // Each worker's load as the router last heard it, by worker id (ListWorkers); empty when the
  // router did not answer.
  using Loads = std::map<std::string, v1::WorkerLoad>;
  Loads LoadsNow() const;
  static bool Busy(const Loads& loads, const std::string& id);  // unknown counts as busy
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
  // Reads the new worker's "worker <id> grpc_port=.. http_port=.." line; times the start-up.
  absl::Status AwaitStarted(Worker& w, absl::Duration timeout);
  // mu_ held: of `role`, a running worker before a starting one, the least busy, the newest.
  std::shared_ptr<Worker> PickVictim(Role role, const Loads& loads);
  // mu_ held: the rebalance part of a change (dp prefill, dd decode wanted), flipped where
  // `rebalance_by` says; what is left of dp and dd is started and stopped.
  void FlipWhereCheaper(int& dp, int& dd, const Loads& loads);
  void BeginDrain(Worker& w, Role from, bool busy);  // mu_ held
  // Drains `w` through the router, timing it; returns whether it drained cleanly.
  absl::Status TimedDrain(Worker& w);
  void DrainAndStop(std::shared_ptr<Worker> w);
  void DrainAndFlip(std::shared_ptr<Worker> w, Role to);
  void FinishFlip(const std::shared_ptr<Worker>& w, Role to);  // after the drain: set the role
  // flip or cost: a worker draining to stop, of the role other than `to`, that can flip instead
  // (mu_ held); null if none.
  std::shared_ptr<Worker> ClaimDrainingFor(Role to);
  void NoteMove(bool flip, int count, const std::string& note);  // mu_ held
  void Reap();  // mu_ held: joins finished background threads, notes unexpected exits

  const LocalActuatorOptions options_;
  AdminClient* admin_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Worker>> workers_;
  std::vector<std::string> unexpected_exits_;
  std::vector<PendingRestart> restarts_;
  std::map<Role, CrashBackoff> backoff_;  // crashes soon after start, per role
  int restarted_ = 0;
  MoveCosts costs_;
  int64_t applies_ = 0;  // Apply calls so far
  ActuationReport report_;
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
