#include "controller/loop/local_actuator.h"

#include <algorithm>
#include <chrono>
#include <csignal>

#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem::controller {
namespace {

v1::WorkerRole ToProto(Role r) { return r == Role::kPrefill ? v1::WORKER_ROLE_PREFILL : v1::WORKER_ROLE_DECODE; }

}  // namespace

LocalActuator::LocalActuator(LocalActuatorOptions options, AdminClient* admin)
    : options_(std::move(options)), admin_(admin) {}

LocalActuator::~LocalActuator() { StopAll(); }

void LocalActuator::RunInBackground(std::function<void()> fn) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  threads_.push_back({std::thread([fn = std::move(fn), done] {
                        fn();
                        done->store(true);
                      }),
                      done});
}

absl::StatusOr<std::shared_ptr<LocalActuator::Worker>> LocalActuator::Spawn(Role role) {
  auto w = std::make_shared<Worker>();
  w->role = role;
  w->id = StrCat(RoleName(role), "-", next_index_[role]++);
  w->seq = next_seq_++;
  std::vector<std::string> argv = {options_.tandem_binary, "worker", "--role", RoleName(role), "--worker-id", w->id};
  argv.insert(argv.end(), options_.worker_flags.begin(), options_.worker_flags.end());
  TANDEM_ASSIGN_OR_RETURN(w->process, ChildProcess::Spawn(argv));
  GetLogger("controller")->info("started {} worker {} (pid {})", RoleName(role), w->id, w->process->pid());
  workers_.push_back(w);
  return w;
}

absl::Status LocalActuator::AwaitStarted(Worker& w, absl::Duration timeout, std::mutex& mu) {
  auto line = w.process->ReadLine(timeout);
  std::lock_guard<std::mutex> lock(mu);
  if (!line.ok()) {
    return absl::UnavailableError(StrCat("worker ", w.id, " did not start within ", absl::FormatDuration(timeout),
                                         " (see its log): ", line.status().message()));
  }
  auto f = ParseStatusFields(*line);
  w.grpc = StrCat("127.0.0.1:", f["grpc_port"]);
  w.http = StrCat("127.0.0.1:", f["http_port"]);
  if (w.state == Worker::State::kStarting) w.state = Worker::State::kRunning;
  return absl::OkStatus();
}

absl::Status LocalActuator::StartAndWait(Role role) {
  std::shared_ptr<Worker> w;
  {
    std::lock_guard<std::mutex> lock(mu_);
    TANDEM_ASSIGN_OR_RETURN(w, Spawn(role));
  }
  return AwaitStarted(*w, options_.start_timeout, mu_);
}

absl::StatusOr<InstanceCounts> LocalActuator::Current() {
  std::lock_guard<std::mutex> lock(mu_);
  Reap();
  InstanceCounts c;
  for (const auto& w : workers_) {
    if (w->state == Worker::State::kStarting || w->state == Worker::State::kRunning ||
        w->state == Worker::State::kChanging) {
      (w->role == Role::kPrefill ? c.prefill : c.decode)++;
    }
  }
  for (const auto& r : restarts_) (r.role == Role::kPrefill ? c.prefill : c.decode)++;  // coming back
  return c;
}

std::shared_ptr<LocalActuator::Worker> LocalActuator::PickVictim(Role role) {
  std::shared_ptr<Worker> best;
  for (const auto& w : workers_) {
    if (w->role != role) continue;
    if (w->state != Worker::State::kRunning && w->state != Worker::State::kStarting) continue;
    // Prefer a running worker (a starting one has no work yet, but is about to be useful).
    if (!best || (w->state == Worker::State::kRunning) > (best->state == Worker::State::kRunning) ||
        ((w->state == Worker::State::kRunning) == (best->state == Worker::State::kRunning) && w->seq > best->seq)) {
      best = w;
    }
  }
  return best;
}

absl::Status LocalActuator::Apply(const InstanceCounts& target) {
  if (target.prefill < 0 || target.decode < 0) return absl::InvalidArgumentError("negative instance count");
  TANDEM_ASSIGN_OR_RETURN(InstanceCounts current, Current());
  std::lock_guard<std::mutex> lock(mu_);
  int dp = target.prefill - current.prefill;
  int dd = target.decode - current.decode;
  // Flips first: a worker that changes role needs no model load.
  while (options_.role_change && ((dp > 0 && dd < 0) || (dp < 0 && dd > 0))) {
    const Role from = dp < 0 ? Role::kPrefill : Role::kDecode;
    const Role to = dp < 0 ? Role::kDecode : Role::kPrefill;
    auto victim = PickVictim(from);
    if (!victim || victim->state != Worker::State::kRunning) break;
    victim->state = Worker::State::kChanging;
    victim->role = to;  // counted in its new role from now on
    GetLogger("controller")->info("changing worker {} from {} to {}", victim->id, RoleName(from), RoleName(to));
    RunInBackground([this, victim, to] { DrainAndFlip(victim, to); });
    dp += to == Role::kPrefill ? -1 : 1;
    dd += to == Role::kDecode ? -1 : 1;
  }
  absl::Status status;
  for (auto [role, delta] : {std::pair{Role::kPrefill, dp}, std::pair{Role::kDecode, dd}}) {
    for (int i = 0; i < delta; ++i) {
      if (auto claimed = ClaimDrainingFor(role)) {
        GetLogger("controller")->info("worker {} was draining to stop; it becomes a {} worker instead", claimed->id,
                                      RoleName(role));
        continue;
      }
      auto w = Spawn(role);
      if (!w.ok()) {
        status.Update(w.status());
        break;
      }
      AwaitInBackground(*w);
    }
    for (int i = 0; i < -delta; ++i) {
      auto victim = PickVictim(role);
      if (!victim) break;
      victim->state = Worker::State::kDraining;
      GetLogger("controller")->info("draining {} worker {} before stopping it", RoleName(role), victim->id);
      RunInBackground([this, victim] { DrainAndStop(victim); });
    }
  }
  return status;
}

void LocalActuator::AwaitInBackground(std::shared_ptr<Worker> started) {
  RunInBackground([this, started] {
    if (absl::Status s = AwaitStarted(*started, options_.start_timeout, mu_); !s.ok()) {
      GetLogger("controller")->error("{}", s.message());
      bool mine;
      {
        std::lock_guard<std::mutex> lock(mu_);
        mine = started->state == Worker::State::kStarting;  // else StopAll or a drain has it
        if (mine) started->state = Worker::State::kDraining;
      }
      if (!mine) return;
      started->process->Stop(absl::Seconds(5));
      std::lock_guard<std::mutex> lock(mu_);
      started->state = Worker::State::kStopped;
    }
  });
}

void LocalActuator::ScheduleRestart(const Worker& w) {
  const absl::Time now = absl::Now();
  auto it = backoff_.try_emplace(w.role, options_.restart_backoff_max, options_.crash_window).first;
  const absl::Duration delay = it->second.Next(w.started, now);
  GetLogger("controller")->warn("replacing {} worker {} in {} (crash {} in a row)", RoleName(w.role), w.id,
                                absl::FormatDuration(delay), it->second.streak());
  restarts_.push_back({w.role, w.id, now + delay});
}

void LocalActuator::StartDueRestarts() {
  const absl::Time now = absl::Now();
  for (auto it = restarts_.begin(); it != restarts_.end();) {
    if (it->at > now) {
      ++it;
      continue;
    }
    // Under a new id: the router refuses the old id from a new address until the dead
    // process's registration expires (a live worker's id cannot be taken over), which would
    // keep the replacement out for seconds.
    auto w = Spawn(it->role);
    if (w.ok()) {
      ++restarted_;
      AwaitInBackground(*w);
    } else {
      GetLogger("controller")->error("replacing worker {}: {}", it->id, w.status().message());
    }
    it = restarts_.erase(it);
  }
}

int LocalActuator::restarts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return restarted_;
}

void LocalActuator::DrainAndStop(std::shared_ptr<Worker> w) {
  auto log = GetLogger("controller");
  const absl::Status drained = admin_->DrainAndWait(w->id, options_.drain_timeout);
  if (!drained.ok() && !absl::IsNotFound(drained)) {
    log->warn("draining worker {}: {}; stopping it anyway (it finishes in-flight work on SIGTERM)", w->id,
              drained.message());
  }
  // With role changes on, a drained worker waits flip_grace before it stops: the controller's
  // next decision may be a scale-out of the other role (a rebalance split over two ticks), and
  // then this worker flips instead of a new process loading the model.
  const absl::Time grace_end = absl::Now() + (options_.role_change ? options_.flip_grace : absl::ZeroDuration());
  std::optional<Role> flip;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      flip = w->flip_to;
      if (flip || stopping_ || absl::Now() >= grace_end) {
        w->stopping = !flip.has_value();
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (flip) {
    FinishFlip(w, *flip);
    return;
  }
  const int code = w->process->Stop(options_.stop_grace);
  log->info("worker {} stopped (exit status {})", w->id, code);
  std::lock_guard<std::mutex> lock(mu_);
  w->state = Worker::State::kStopped;
}

std::shared_ptr<LocalActuator::Worker> LocalActuator::ClaimDrainingFor(Role to) {
  if (!options_.role_change) return nullptr;
  for (const std::shared_ptr<Worker>& w : workers_) {
    if (w->state == Worker::State::kDraining && !w->stopping && !w->flip_to && w->role != to &&
        w->process->Running()) {
      w->flip_to = to;
      w->role = to;
      w->state = Worker::State::kChanging;
      return w;
    }
  }
  return nullptr;
}

void LocalActuator::DrainAndFlip(std::shared_ptr<Worker> w, Role to) {
  if (absl::Status s = admin_->DrainAndWait(w->id, options_.drain_timeout); !s.ok()) {
    GetLogger("controller")->warn("draining worker {} before its role change: {}; changing it anyway", w->id,
                                  s.message());
  }
  FinishFlip(w, to);
}

void LocalActuator::FinishFlip(const std::shared_ptr<Worker>& w, Role to) {
  auto log = GetLogger("controller");
  if (absl::Status s = admin_->SetWorkerRole(w->id, ToProto(to)); !s.ok()) {
    log->error("changing worker {} to {} failed: {}; stopping it", w->id, RoleName(to), s.message());
    {
      std::lock_guard<std::mutex> lock(mu_);
      w->state = Worker::State::kDraining;
      w->stopping = true;
    }
    w->process->Stop(options_.stop_grace);
    std::lock_guard<std::mutex> lock(mu_);
    w->state = Worker::State::kStopped;
    return;
  }
  log->info("worker {} is now a {} worker", w->id, RoleName(to));
  std::lock_guard<std::mutex> lock(mu_);
  if (w->state == Worker::State::kChanging) w->state = Worker::State::kRunning;
}

void LocalActuator::Reap() {
  for (auto it = threads_.begin(); it != threads_.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = threads_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = workers_.begin(); it != workers_.end();) {
    Worker& w = **it;
    if (w.state == Worker::State::kRunning || w.state == Worker::State::kChanging) {
      if (!w.process->Running()) {
        GetLogger("controller")->error("worker {} (pid {}) exited unexpectedly", w.id, w.process->pid());
        unexpected_exits_.push_back(w.id);
        w.state = Worker::State::kStopped;
        if (options_.restart_crashed && !stopping_) ScheduleRestart(w);
      }
    }
    if (w.state == Worker::State::kStopped && it->use_count() == 1) {
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  if (!stopping_) StartDueRestarts();
}

std::vector<std::string> LocalActuator::Draining() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& w : workers_) {
    if (w->state == Worker::State::kDraining || w->state == Worker::State::kChanging) out.push_back(w->id);
  }
  return out;
}

std::vector<LocalActuator::Process> LocalActuator::Processes() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Process> out;
  for (const auto& w : workers_) {
    if (w->state == Worker::State::kStopped) continue;
    Process p;
    p.worker_id = w->id;
    p.role = w->state == Worker::State::kDraining   ? "draining"
             : w->state == Worker::State::kChanging ? "changing"
                                                    : RoleName(w->role);
    p.pid = w->process->pid();
    p.grpc = w->grpc;
    p.http = w->http;
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<std::string> LocalActuator::TakeUnexpectedExits() {
  std::lock_guard<std::mutex> lock(mu_);
  Reap();
  return std::exchange(unexpected_exits_, {});
}

void LocalActuator::StopAll() {
  std::vector<std::shared_ptr<Worker>> running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    restarts_.clear();
    for (const auto& w : workers_) {
      if (w->state != Worker::State::kStopped && w->state != Worker::State::kDraining) {
        w->state = Worker::State::kDraining;
        running.push_back(w);
      }
    }
  }
  // SIGTERM makes a worker drain by itself; stop them in parallel.
  for (const auto& w : running) w->process->Signal(SIGTERM);
  for (const auto& w : running) {
    w->process->Stop(options_.stop_grace);
    std::lock_guard<std::mutex> lock(mu_);
    w->state = Worker::State::kStopped;
  }
  std::vector<Background> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.thread.join();
}

}  // namespace tandem::controller
