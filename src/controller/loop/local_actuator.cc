#include "controller/loop/local_actuator.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <tuple>

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

absl::Status LocalActuator::AwaitStarted(Worker& w, absl::Duration timeout) {
  auto line = w.process->ReadLine(timeout);
  std::lock_guard<std::mutex> lock(mu_);
  if (!line.ok()) {
    return absl::UnavailableError(StrCat("worker ", w.id, " did not start within ", absl::FormatDuration(timeout),
                                         " (see its log): ", line.status().message()));
  }
  auto f = ParseStatusFields(*line);
  w.grpc = StrCat("127.0.0.1:", f["grpc_port"]);
  w.http = StrCat("127.0.0.1:", f["http_port"]);
  costs_.NoteStart(absl::ToDoubleSeconds(absl::Now() - w.started));
  if (w.state == Worker::State::kStarting) w.state = Worker::State::kRunning;
  return absl::OkStatus();
}

absl::Status LocalActuator::StartAndWait(Role role) {
  std::shared_ptr<Worker> w;
  {
    std::lock_guard<std::mutex> lock(mu_);
    TANDEM_ASSIGN_OR_RETURN(w, Spawn(role));
  }
  return AwaitStarted(*w, options_.start_timeout);
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

LocalActuator::Loads LocalActuator::LoadsNow() const {
  Loads loads;
  auto workers = admin_->ListWorkers();
  if (!workers.ok()) {
    GetLogger("controller")->warn("reading the workers' load: {}", workers.status().message());
    return loads;
  }
  for (const v1::WorkerStatus& w : *workers) loads[w.info().worker_id()] = w.load();
  return loads;
}

bool LocalActuator::Busy(const Loads& loads, const std::string& id) {
  auto it = loads.find(id);
  if (it == loads.end()) return true;
  const v1::WorkerLoad& l = it->second;
  return l.inflight_requests() > 0 || l.running() > 0 || l.waiting() > 0 || l.queued_prefill_tokens() > 0;
}

std::shared_ptr<LocalActuator::Worker> LocalActuator::PickVictim(Role role, const Loads& loads) {
  // Smaller is a better victim: starting after running (a starting worker is about to be
  // useful), then by the work it has (it drains sooner), then the newest.
  auto rank = [&](const Worker& w) {
    auto it = loads.find(w.id);
    const int64_t work = it == loads.end() ? INT64_MAX / 2 : DrainWork(it->second);
    return std::tuple(w.state != Worker::State::kRunning, work, -w.seq);
  };
  std::shared_ptr<Worker> best;
  for (const auto& w : workers_) {
    if (w->role != role) continue;
    if (w->state != Worker::State::kRunning && w->state != Worker::State::kStarting) continue;
    if (!best || rank(*w) < rank(*best)) best = w;
  }
  return best;
}

void LocalActuator::NoteMove(bool flip, int count, const std::string& note) {
  (flip ? report_.flips : report_.restarts) += count;
  report_.notes.push_back(note);
  GetLogger("controller")->info("rebalance: {}", note);
}

void LocalActuator::BeginDrain(Worker& w, Role from, bool busy) {
  w.drain_apply = applies_;
  w.drain_from = from;
  w.drain_started = absl::Now();
  w.drain_busy = busy;
  w.drained = false;
}

void LocalActuator::FlipWhereCheaper(int& dp, int& dd, const Loads& loads) {
  while ((dp > 0 && dd < 0) || (dp < 0 && dd > 0)) {
    const Role from = dp < 0 ? Role::kPrefill : Role::kDecode;
    const Role to = dp < 0 ? Role::kDecode : Role::kPrefill;
    auto victim = PickVictim(from, loads);
    if (!victim || victim->state != Worker::State::kRunning) return;
    const bool busy = Busy(loads, victim->id);
    const MoveChoice choice =
        ChooseMove(options_.rebalance_by, costs_.PredictDrain(from, busy), costs_.start_s());
    if (!choice.flip) {
      // This move and the rest (their victims are no less busy) stop a worker and start one.
      const int moves = std::min(std::abs(dp), std::abs(dd));
      NoteMove(false, moves,
               StrCat(moves, " ", RoleName(from), " → ", RoleName(to), " by ", choice.why, " (", victim->id,
                      busy ? " has work in flight)" : " is idle)"));
      return;
    }
    NoteMove(true, 1, StrCat(victim->id, " ", RoleName(from), " → ", RoleName(to), " by ", choice.why,
                             busy ? " (it has work in flight)" : " (it is idle)"));
    victim->state = Worker::State::kChanging;
    victim->role = to;  // counted in its new role from now on
    BeginDrain(*victim, from, busy);
    RunInBackground([this, victim, to] { DrainAndFlip(victim, to); });
    dp += to == Role::kPrefill ? -1 : 1;
    dd += to == Role::kDecode ? -1 : 1;
  }
}

absl::Status LocalActuator::Apply(const InstanceCounts& target) {
  if (target.prefill < 0 || target.decode < 0) return absl::InvalidArgumentError("negative instance count");
  TANDEM_ASSIGN_OR_RETURN(InstanceCounts current, Current());
  if (target == current) return absl::OkStatus();
  const Loads loads = LoadsNow();  // a call to the router: not under mu_
  std::lock_guard<std::mutex> lock(mu_);
  ++applies_;
  int dp = target.prefill - current.prefill;
  int dd = target.decode - current.decode;
  FlipWhereCheaper(dp, dd, loads);
  absl::Status status;
  for (auto [role, delta] : {std::pair{Role::kPrefill, dp}, std::pair{Role::kDecode, dd}}) {
    for (int i = 0; i < delta; ++i) {
      if (auto claimed = ClaimDrainingFor(role)) continue;
      auto w = Spawn(role);
      if (!w.ok()) {
        status.Update(w.status());
        break;
      }
      AwaitInBackground(*w);
    }
    for (int i = 0; i < -delta; ++i) {
      auto victim = PickVictim(role, loads);
      if (!victim) break;
      // A worker still starting has no work: its drain says nothing about busy drains.
      const bool busy = victim->state != Worker::State::kStarting && Busy(loads, victim->id);
      victim->state = Worker::State::kDraining;
      BeginDrain(*victim, role, busy);
      GetLogger("controller")->info("draining {} worker {} before stopping it", RoleName(role), victim->id);
      RunInBackground([this, victim] { DrainAndStop(victim); });
    }
  }
  return status;
}

void LocalActuator::AwaitInBackground(std::shared_ptr<Worker> started) {
  RunInBackground([this, started] {
    if (absl::Status s = AwaitStarted(*started, options_.start_timeout); !s.ok()) {
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

absl::Status LocalActuator::TimedDrain(Worker& w) {
  const absl::Time start = absl::Now();
  const absl::Status s = admin_->DrainAndWait(w.id, options_.drain_timeout);
  std::lock_guard<std::mutex> lock(mu_);
  w.drained = true;
  // Only clean drains of workers that had work say how long a busy worker takes to drain.
  if (s.ok() && w.drain_busy) costs_.NoteDrain(w.drain_from, absl::ToDoubleSeconds(absl::Now() - start));
  return s;
}

void LocalActuator::DrainAndStop(std::shared_ptr<Worker> w) {
  auto log = GetLogger("controller");
  const absl::Status drained = TimedDrain(*w);
  if (!drained.ok() && !absl::IsNotFound(drained)) {
    log->warn("draining worker {}: {}; stopping it anyway (it finishes in-flight work on SIGTERM)", w->id,
              drained.message());
  }
  // Unless every move restarts, a drained worker waits flip_grace before it stops: the
  // controller's next decision may be a scale-out of the other role (a rebalance split over two
  // ticks), and then this worker may flip instead of a new process loading the model.
  const bool may_flip = options_.rebalance_by != RebalanceBy::kRestart;
  const absl::Time grace_end = absl::Now() + (may_flip ? options_.flip_grace : absl::ZeroDuration());
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
  // (With kRestart this only reports the restart: ChooseMove never flips.)
  for (const std::shared_ptr<Worker>& w : workers_) {
    // A drain begun by this very Apply was a restart by choice (FlipWhereCheaper flips the rest).
    if (w->state != Worker::State::kDraining || w->stopping || w->flip_to || w->role == to ||
        w->drain_apply == applies_ || w->declined_apply == applies_ || !w->process->Running()) {
      continue;
    }
    const double drained_s = absl::ToDoubleSeconds(absl::Now() - w->drain_started);
    const MoveChoice choice = ChooseMove(
        options_.rebalance_by, costs_.PredictDrain(w->drain_from, w->drain_busy && !w->drained, drained_s),
        costs_.start_s());
    NoteMove(choice.flip, 1,
             StrCat(w->id, " (draining to stop for ", absl::FormatDuration(absl::Trunc(absl::Now() - w->drain_started,
                                                                                    absl::Milliseconds(100))),
                    ") ", RoleName(w->drain_from), " → ", RoleName(to), " by ", choice.why));
    if (!choice.flip) {
      w->declined_apply = applies_;  // one note per worker and decision
      return nullptr;
    }
    w->flip_to = to;
    w->role = to;
    w->state = Worker::State::kChanging;
    return w;
  }
  return nullptr;
}

void LocalActuator::DrainAndFlip(std::shared_ptr<Worker> w, Role to) {
  if (absl::Status s = TimedDrain(*w); !s.ok()) {
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

ActuationReport LocalActuator::TakeReport() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(report_, {});
}

MoveCosts LocalActuator::costs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return costs_;
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
