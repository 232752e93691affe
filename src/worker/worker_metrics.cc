#include "worker/worker_metrics.h"

#include "metrics/buckets.h"

namespace tandem::worker {

WorkerMetrics::WorkerMetrics(metrics::MetricsRegistry& r, std::string role, std::function<EngineLoad()> load,
                             std::function<EngineCounters()> counters, std::function<int64_t()> leases_expired,
                             std::function<int64_t()> engine_failures)
    : registry_(r) {
  busy_seconds_ = &r.AddCounter("tandem_worker_busy_seconds_total", "Seconds spent running model iterations").With();
  auto& iteration = r.AddHistogram("tandem_worker_iteration_seconds",
                                   "Time of one engine iteration, by what it ran (mixed: prefill chunks and decodes)",
                                   metrics::TokenLatencyBuckets(), {"phase"});
  iteration_seconds_[0] = &iteration.With({"prefill"});
  iteration_seconds_[1] = &iteration.With({"decode"});
  iteration_seconds_[2] = &iteration.With({"mixed"});
  iteration_tokens_ = &r.AddHistogram("tandem_worker_iteration_tokens", "Tokens run through the model per iteration",
                                      metrics::ExponentialBuckets(1, 2, 12))
                           .With();
  draining_ = &r.AddGauge("tandem_worker_draining", "1 while the worker drains (takes no new work)").With();
  reserve_refused = &r.AddCounter("tandem_worker_kv_reservations_refused_total",
                                  "KV reservations refused for lack of free blocks")
                         .With();
  unauthenticated = &r.AddCounter("tandem_worker_unauthenticated_calls_total",
                                  "Internal calls refused for a missing or wrong cluster token, by service/method",
                                  {"service"});
  prefill_seconds = &r.AddHistogram("tandem_worker_prefill_seconds",
                                    "Time from a Prefill call to its first token", metrics::DefaultLatencyBuckets())
                         .With();
  requests_ = &r.AddCounter("tandem_worker_requests_total", "Requests finished, by finish reason", {"reason"});
  transfer_bytes_ = &r.AddCounter("tandem_worker_kv_transfer_bytes_total", "KV bytes sent to decode workers").With();
  transfers_ = &r.AddCounter("tandem_worker_kv_transfers_total", "KV transfers this worker sent, by result (ok, data_loss: blocks arrived corrupted or missing, failed)",
                              {"result"});
  transfer_seconds_ = &r.AddHistogram("tandem_worker_kv_transfer_seconds",
                                      "Time from a request's first KV block sent to the last acknowledged",
                                      metrics::DefaultLatencyBuckets())
                           .With();
  auto& blocks = r.AddCallbackGauge("tandem_worker_kv_blocks", "KV cache blocks by state", {"state"});
  callbacks_.push_back(blocks.Register({"free"}, [load] { return static_cast<double>(load().free_blocks); }));
  callbacks_.push_back(blocks.Register({"reserved"}, [load] { return static_cast<double>(load().reserved_blocks); }));
  callbacks_.push_back(blocks.Register({"used"}, [load] {
    const EngineLoad l = load();
    return static_cast<double>(l.total_blocks - l.free_blocks - l.reserved_blocks);
  }));
  callbacks_.push_back(r.AddCallbackCounter("tandem_worker_kv_leases_expired_total",
                                            "KV reservations freed because nobody used them in time")
                           .Register({}, [leases_expired] { return static_cast<double>(leases_expired()); }));
  callbacks_.push_back(r.AddCallbackCounter("tandem_worker_engine_failures_total",
                                            "Engine tasks or iterations that threw; the worker kept serving")
                           .Register({}, [engine_failures] { return static_cast<double>(engine_failures()); }));
  auto& seqs = r.AddCallbackGauge("tandem_worker_sequences", "Sequences in the engine by state", {"state"});
  callbacks_.push_back(seqs.Register({"running"}, [load] { return static_cast<double>(load().running); }));
  callbacks_.push_back(seqs.Register({"waiting"}, [load] { return static_cast<double>(load().waiting); }));
  callbacks_.push_back(r.AddCallbackGauge("tandem_worker_queued_prefill_tokens",
                                          "Prompt tokens waiting to be computed")
                           .Register({}, [load] { return static_cast<double>(load().queued_prefill_tokens); }));
  callbacks_.push_back(r.AddCallbackCounter("tandem_worker_preemptions_total", "Sequences preempted (recomputed)")
                           .Register({}, [counters] { return static_cast<double>(counters().preemptions); }));
  callbacks_.push_back(r.AddCallbackCounter("tandem_worker_prefix_cache_hit_tokens_total",
                                            "Prompt tokens served from the prefix cache")
                           .Register({}, [counters] { return static_cast<double>(counters().prefix_hit_tokens); }));
  auto& spec = r.AddCallbackCounter("tandem_worker_speculative_tokens_total",
                                    "Speculative decoding: draft tokens run through the model (drafted) and those the "
                                    "sampler kept (accepted)",
                                    {"result"});
  callbacks_.push_back(spec.Register({"drafted"}, [counters] { return static_cast<double>(counters().draft_tokens); }));
  callbacks_.push_back(spec.Register({"accepted"}, [counters] { return static_cast<double>(counters().accepted_draft_tokens); }));
  auto& tokens = r.AddCallbackCounter("tandem_worker_tokens_total",
                                      "Tokens through the model, by phase: prompt tokens computed (prefill), tokens "
                                      "decode iterations produced (decode; speculative draft tokens only if kept)",
                                      {"phase"});
  callbacks_.push_back(tokens.Register({"prefill"}, [counters] { return static_cast<double>(counters().prefill_tokens); }));
  callbacks_.push_back(tokens.Register({"decode"}, [counters] { return static_cast<double>(counters().decode_tokens); }));
  SetRole(role);
}

void WorkerMetrics::StepDone(const StepStats& step) {
  if (step.num_tokens <= 0) return;
  busy_seconds_->Increment(step.seconds);
  const int phase = step.num_decode_tokens == 0 ? 0 : step.num_prefill_tokens == 0 ? 1 : 2;
  iteration_seconds_[phase]->Observe(step.seconds);
  iteration_tokens_->Observe(step.num_tokens);
}

void WorkerMetrics::SetRole(const std::string& role) { registry_.SetConstLabels({{"role", role}}); }

void WorkerMetrics::RequestFinished(const RequestOutput& out) {
  requests_->With({FinishReasonName(out.finish)}).Increment();
}

void WorkerMetrics::TransferDone(absl::StatusCode code, int64_t bytes, double seconds) {
  const bool ok = code == absl::StatusCode::kOk;
  transfers_->With({ok ? "ok" : code == absl::StatusCode::kDataLoss ? "data_loss" : "failed"}).Increment();
  if (ok) {
    transfer_bytes_->Increment(static_cast<double>(bytes));
    transfer_seconds_->Observe(seconds);
  }
}

}  // namespace tandem::worker
