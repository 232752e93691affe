#include "router/router_metrics.h"

#include "metrics/buckets.h"

namespace tandem::router {

RouterMetrics::RouterMetrics(metrics::MetricsRegistry& r) {
  requests = &r.AddCounter("tandem_router_requests_total", "API requests by route and HTTP status", {"route", "status"});
  ttft = &r.AddHistogram("tandem_router_ttft_seconds", "Time from a request's arrival to its first token",
                         metrics::DefaultLatencyBuckets())
              .With();
  itl = &r.AddHistogram("tandem_router_itl_seconds",
                        "Time per output token between a request's streamed messages (a gap before k tokens "
                        "that arrive together counts k times, gap / k)",
                        metrics::TokenLatencyBuckets())
             .With();
  tpot = &r.AddHistogram("tandem_router_tpot_seconds",
                         "Time per output token of each finished request after its first: (last token - first "
                         "token) / (tokens - 1), requests with 2 or more tokens (n > 1: the first choice's)",
                         metrics::TokenLatencyBuckets())
              .With();
  e2e = &r.AddHistogram("tandem_router_e2e_seconds", "Time from a request's arrival to its last token",
                        metrics::DefaultLatencyBuckets())
             .With();
  queue = &r.AddHistogram("tandem_router_queue_seconds",
                          "Time from a request's arrival until a worker took it (KV reserved on a decode worker)",
                          metrics::DefaultLatencyBuckets())
               .With();
  prompt_tokens = &r.AddHistogram("tandem_router_prompt_tokens", "Prompt length of requests",
                                  metrics::ExponentialBuckets(16, 2, 12))
                       .With();
  generated_tokens = &r.AddHistogram("tandem_router_generated_tokens", "Tokens generated per request",
                                     metrics::ExponentialBuckets(1, 2, 14))
                          .With();
  inflight = &r.AddGauge("tandem_router_inflight_requests", "Requests being served").With();
  prefill_retries = &r.AddCounter("tandem_router_prefill_retries_total",
                                  "Prefills retried on another worker after a failure before the first token")
                         .With();
  prefills = &r.AddCounter("tandem_router_prefills_total",
                           "Requests by where their prompt was computed (disaggregated: a prefill worker; "
                           "local: the decode or mixed worker; local_by_cost: there, because a prefill worker's "
                           "queue would miss --local-prefill-ttft-slo; local_fallback: there, because no prefill "
                           "worker could fill the request's KV lease)",
                           {"mode"});
  unauthenticated = &r.AddCounter("tandem_router_unauthenticated_calls_total",
                                  "Internal calls (Registry, RouterAdmin) refused for a missing or wrong cluster token",
                                  {"service"});
  transfer_seconds = &r.AddHistogram("tandem_router_kv_transfer_seconds",
                                     "KV transfer time of disaggregated requests (first block sent to last acked)",
                                     metrics::DefaultLatencyBuckets())
                          .With();
  transfer_bytes = &r.AddCounter("tandem_router_kv_transfer_bytes_total", "KV bytes moved from prefill to decode")
                        .With();
  cancelled = &r.AddCounter("tandem_router_cancelled_total",
                            "Requests cancelled (client gone, deadline or stop string)")
                   .With();
  migrations = &r.AddCounter("tandem_router_migrations_total",
                             "Requests resumed on another worker after the one serving them failed (stream_failed), "
                             "was dropped by the registry (worker_lost), every prefill into their KV lease "
                             "failed (prefill_failed), or no prefill worker could fill it (no_prefill_worker: "
                             "the prompt is computed on a decode worker instead)",
                             {"cause"});
  migration_seconds = &r.AddHistogram("tandem_router_migration_seconds",
                                      "Delay a migration added: from the worker's failure to the resumed request's "
                                      "next token",
                                      metrics::DefaultLatencyBuckets())
                           .With();
}

}  // namespace tandem::router
