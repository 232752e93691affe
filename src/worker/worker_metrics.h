// The metrics a worker exports on /metrics (tandem_worker_*).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/engine.h"
#include "metrics/registry.h"

namespace tandem::worker {

class WorkerMetrics {
 public:
  // `load` is read at every scrape (it must be cheap and thread-safe).
  // Every sample carries the label role="<role>" (prefill, decode or mixed).
  WorkerMetrics(metrics::MetricsRegistry& registry, std::string role, std::function<EngineLoad()> load,
                std::function<EngineCounters()> counters, std::function<int64_t()> leases_expired,
                std::function<int64_t()> engine_failures);

  void RequestFinished(const RequestOutput& out);
  // A KV transfer this worker sent ended with `code` (DATA_LOSS: the receiver found blocks
  // missing or corrupted).
  void TransferDone(absl::StatusCode code, int64_t bytes, double seconds);
  // One engine iteration (called on the engine thread).
  void StepDone(const StepStats& step);
  // The worker's role changed (SetRole): the `role` label follows.
  void SetRole(const std::string& role);
  void SetDraining(bool draining) { draining_->Set(draining ? 1 : 0); }

  metrics::Counter* reserve_refused;
  metrics::CounterFamily* unauthenticated;
  metrics::Histogram* prefill_seconds;

 private:
  metrics::MetricsRegistry& registry_;
  metrics::CounterFamily* requests_;
  metrics::Counter* busy_seconds_;
  metrics::Histogram* iteration_seconds_[3];  // prefill, decode, mixed
  metrics::Histogram* iteration_tokens_;
  metrics::Gauge* draining_;
  metrics::Counter* transfer_bytes_;
  metrics::CounterFamily* transfers_;
  metrics::Histogram* transfer_seconds_;
  std::vector<metrics::CallbackRegistration> callbacks_;
};

}  // namespace tandem::worker
