#include "worker/engine_runner.h"

#include "common/logging.h"
#include "common/strings.h"

namespace tandem::worker {
namespace {

// Runs f, turning an exception into an error status for the one request it concerned.
template <typename F>
absl::Status Guarded(F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    return absl::InternalError(StrCat("the engine failed on this request: ", e.what()));
  }
}

}  // namespace

EngineRunner::EngineRunner(std::unique_ptr<Engine> engine, KvLeaseTable* leases)
    : engine_(std::move(engine)), leases_(leases), config_(engine_->model_config()) {
  load_ = engine_->Load();
  thread_ = std::thread([this] { Loop(); });
}

EngineRunner::~EngineRunner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void EngineRunner::Post(std::function<void(Engine&)> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void EngineRunner::Add(GenerateRequest request, RequestSink sink, std::function<void(const absl::Status&)> rejected) {
  Post([this, request = std::move(request), sink = std::move(sink), rejected = std::move(rejected)](Engine& e) mutable {
    const std::string id = request.id;
    if (absl::Status s = Guarded([&] { return e.Add(std::move(request)); }); !s.ok()) {
      rejected(s);
      return;
    }
    sinks_[id] = std::move(sink);
  });
}

void EngineRunner::AddPrefilled(GenerateRequest request, std::vector<int32_t> blocks, int32_t first_token,
                                int32_t rng_draws, RequestSink sink,
                                std::function<void(const absl::Status&)> rejected) {
  Post([this, request = std::move(request), blocks = std::move(blocks), first_token, rng_draws, sink = std::move(sink),
        rejected = std::move(rejected)](Engine& e) mutable {
    const std::string id = request.id;
    if (absl::Status s = Guarded([&] { return e.AddPrefilled(std::move(request), blocks, first_token, rng_draws); });
        !s.ok()) {
      e.FreeKvBlocks(blocks);  // the lease's blocks are ours now
      rejected(s);
      return;
    }
    sinks_[id] = std::move(sink);
  });
}

void EngineRunner::Cancel(const std::string& request_id) {
  Post([request_id](Engine& e) { e.Cancel(request_id); });
}

EngineLoad EngineRunner::load() const {
  std::lock_guard<std::mutex> lock(mu_);
  return load_;
}

void EngineRunner::SetStepObserver(std::function<void(const StepStats&)> observer) {
  std::lock_guard<std::mutex> lock(mu_);
  step_observer_ = std::move(observer);
}

EngineCounters EngineRunner::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

int32_t EngineRunner::inflight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return inflight_ + static_cast<int32_t>(tasks_.size());  // requests posted but not yet added count too
}

// Nothing thrown on the engine thread may end the process: a task that throws is logged and
// counted, and the requests it concerned fail through their own paths (their sinks or timeouts).
void EngineRunner::RunTask(std::function<void(Engine&)>& task) {
  try {
    task(*engine_);
  } catch (const std::exception& e) {
    task_failures_.fetch_add(1);
    GetLogger("worker")->error("an engine task failed: {}", e.what());
  } catch (...) {
    task_failures_.fetch_add(1);
    GetLogger("worker")->error("an engine task failed with an unknown exception");
  }
}

absl::StatusOr<std::vector<RequestOutput>> EngineRunner::GuardedStep() {
  try {
    return engine_->Step();
  } catch (const std::exception& e) {
    task_failures_.fetch_add(1);
    return absl::InternalError(StrCat("the engine step threw: ", e.what()));
  } catch (...) {
    task_failures_.fetch_add(1);
    return absl::InternalError("the engine step threw an unknown exception");
  }
}

void EngineRunner::FailAll() {
  for (auto& [id, sink] : sinks_) {
    RequestOutput out;
    out.id = id;
    out.finish = FinishReason::kError;
    try {
      sink(*engine_, out);
      engine_->Cancel(id);
    } catch (const std::exception& e) {
      GetLogger("worker")->error("request={} could not be failed cleanly: {}", id, e.what());
    }
  }
  sinks_.clear();
}

void EngineRunner::Loop() {
  auto log = GetLogger("worker");
  for (;;) {
    std::deque<std::function<void(Engine&)>> tasks;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Idle: wake for new tasks, or every 50 ms to expire KV leases.
      if (tasks_.empty() && !stop_ && !engine_->HasWork()) {
        cv_.wait_for(lock, std::chrono::milliseconds(50));
      }
      if (stop_) break;
      tasks.swap(tasks_);
    }
    for (auto& task : tasks) RunTask(task);
    if (leases_ != nullptr) {
      int timed_out = 0;
      const std::vector<int32_t> freed = leases_->TakeExpired(absl::Now(), &timed_out);
      leases_expired_.fetch_add(timed_out);  // each is logged with its request by the table
      if (!freed.empty()) engine_->FreeKvBlocks(freed);
    }
    if (engine_->HasWork()) {
      absl::StatusOr<std::vector<RequestOutput>> outputs = GuardedStep();
      if (!outputs.ok()) {
        log->error("engine step failed: {}", outputs.status());
        FailAll();  // rather than spin on a broken engine
      } else {
        std::function<void(const StepStats&)> observer;
        {
          std::lock_guard<std::mutex> lock(mu_);
          observer = step_observer_;
        }
        if (observer) observer(engine_->last_step());
        for (const RequestOutput& out : *outputs) {
          auto it = sinks_.find(out.id);
          if (it == sinks_.end()) continue;
          it->second(*engine_, out);
          if (out.finish != FinishReason::kNone) sinks_.erase(it);
        }
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    load_ = engine_->Load();
    counters_ = engine_->counters();
    inflight_ = static_cast<int32_t>(sinks_.size());
  }
}

}  // namespace tandem::worker
