// The router's metrics (tandem_router_*): requests by route and status, latency histograms
// (time to first token, inter-token latency, end to end), token counts, in-flight requests,
// prefill retries, disaggregated vs local prefills, KV transfer time and bytes, requests
// migrated to another worker and the delay that cost them.
#pragma once

#include <string>

#include "metrics/registry.h"

namespace tandem::router {

struct RouterMetrics {
  explicit RouterMetrics(metrics::MetricsRegistry& r);

  metrics::CounterFamily* requests;       // {route, status}
  metrics::Histogram* ttft;
  metrics::Histogram* itl;
  metrics::Histogram* tpot;
  metrics::Histogram* e2e;
  metrics::Histogram* queue;              // arrival → dispatched to a worker (KV reserved)
  metrics::Histogram* prompt_tokens;
  metrics::Histogram* generated_tokens;
  metrics::Gauge* inflight;
  metrics::Counter* prefill_retries;
  metrics::CounterFamily* prefills;       // {mode = disaggregated | local}
  metrics::CounterFamily* unauthenticated;  // {service}: internal calls without the cluster token
  metrics::Histogram* transfer_seconds;
  metrics::Counter* transfer_bytes;
  metrics::Counter* cancelled;
  metrics::CounterFamily* migrations;   // {cause = stream_failed | worker_lost | prefill_failed}
  metrics::Histogram* migration_seconds;  // a worker's failure → the resumed request's next token
};

}  // namespace tandem::router
