// The metrics a worker exports on /metrics (tandem_worker_*).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "metrics/registry.h"

namespace tandem::worker {

class WorkerMetrics {
 public:
  // `load` is read at every scrape (it must be cheap and thread-safe).
  WorkerMetrics(metrics::MetricsRegistry& registry, std::function<EngineLoad()> load,
                std::function<EngineCounters()> counters, std::function<int64_t()> leases_expired);

  void RequestFinished(const RequestOutput& out);
  void TransferDone(bool ok, int64_t bytes, double seconds);

  metrics::Counter* reserve_refused;
  metrics::Histogram* prefill_seconds;

 private:
  metrics::CounterFamily* requests_;
  metrics::Counter* transfer_bytes_;
  metrics::CounterFamily* transfers_;
  metrics::Histogram* transfer_seconds_;
  std::vector<metrics::CallbackRegistration> callbacks_;
};

}  // namespace tandem::worker
