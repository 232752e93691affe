// Owns an Engine on a dedicated thread: gRPC handlers and the KV transport post work to it, and
// each request's outputs are delivered to the sink registered with it. Also expires KV leases.
//
// Thread-safe: every public method may be called from any thread. Sinks and posted tasks run
// on the engine thread and must not block (they hand data to gRPC reactors or the transport).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "engine/engine.h"
#include "worker/kv_lease_table.h"

namespace tandem::worker {

using RequestSink = std::function<void(Engine&, const RequestOutput&)>;

class EngineRunner {
 public:
  // `leases` may be null (no decode role); it must outlive the runner.
  EngineRunner(std::unique_ptr<Engine> engine, KvLeaseTable* leases);
  ~EngineRunner();

  // Runs `task` on the engine thread, in order with other tasks.
  void Post(std::function<void(Engine&)> task);
  // Runs `task` on the engine thread and waits for its result.
  template <typename T>
  T Call(std::function<T(Engine&)> task) {
    auto promise = std::make_shared<std::promise<T>>();
    auto future = promise->get_future();
    Post([promise, task = std::move(task)](Engine& e) { promise->set_value(task(e)); });
    return future.get();
  }

  // Adds a request and routes its outputs to `sink` (until the output that finishes it). If the
  // engine refuses it, `rejected` gets why instead. Returns at once: both run on the engine
  // thread (a gRPC handler never waits for an engine iteration).
  void Add(GenerateRequest request, RequestSink sink, std::function<void(const absl::Status&)> rejected);
  // Adds a request decoding from transferred KV (see Engine::AddPrefilled); refused requests'
  // blocks are freed.
  void AddPrefilled(GenerateRequest request, std::vector<int32_t> blocks, int32_t first_token, int32_t rng_draws,
                    RequestSink sink, std::function<void(const absl::Status&)> rejected);
  // Called on the engine thread after every iteration (metrics); set once, before work arrives.
  void SetStepObserver(std::function<void(const StepStats&)> observer);
  // Cancels a request wherever it is; its sink gets a final kCancelled output.
  void Cancel(const std::string& request_id);

  // Snapshot of the engine's load, refreshed every iteration.
  EngineLoad load() const;
  EngineCounters counters() const;
  // Requests with a sink, plus tasks not yet run (which may add more).
  int32_t inflight() const;
  const ModelConfig& model_config() const { return config_; }
  // KV leases that expired unused (the router never came back for them).
  int64_t leases_expired() const { return leases_expired_.load(); }
  // Engine tasks or steps that threw (each logged; the process keeps serving).
  int64_t task_failures() const { return task_failures_.load(); }

 private:
  void RunTask(std::function<void(Engine&)>& task);
  absl::StatusOr<std::vector<RequestOutput>> GuardedStep();
  void FailAll();
  void Loop();

  std::unique_ptr<Engine> engine_;
  KvLeaseTable* leases_;
  const ModelConfig config_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void(Engine&)>> tasks_;  // guarded by mu_
  bool stop_ = false;                               // guarded by mu_
  EngineLoad load_;                                 // guarded by mu_
  EngineCounters counters_;                         // guarded by mu_
  int32_t inflight_ = 0;                            // guarded by mu_
  std::unordered_map<std::string, RequestSink> sinks_;  // engine thread only
  std::function<void(const StepStats&)> step_observer_;  // guarded by mu_
  std::atomic<int64_t> leases_expired_{0};
  std::atomic<int64_t> task_failures_{0};
  std::thread thread_;
};

}  // namespace tandem::worker
