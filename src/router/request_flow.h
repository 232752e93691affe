// One request's way through the workers. docs/request-path.md walks every hop, in order, with
// the file and function doing it; this is the router's part of it, a state machine over
// WorkerClient (so that it is tested against a fake worker, tests/unit/router):
//
//   Start ─┬─ local (PrefillLocally, PrefillLocallyByCost) ─ kGenerating ─┬─ Finish / Fail
//          └─ kReserving ─┬─ lease ─ kPrefilling ─ first token ─ kDecoding ─┤
//                         └─ all full ─ kWaitingForRoom ─┘                  └─ (Cancel: any phase)
//
// - reserve: KV on a decode worker (placement::PickDecode) under a lease. A full worker
//   (RESOURCE_EXHAUSTED) or one that is draining, changed role or is unreachable is skipped for
//   the next; when every one is full the flow waits (backoff 10 ms doubling to 200 ms, on the
//   FlowClock) and is refused with RESOURCE_EXHAUSTED after `admission_timeout` (HTTP 429).
// - prefill: on a prefill worker (placement::PickPrefill) that sends the KV into the lease and
//   returns the first token. A retryable failure, before or after KV started moving, is retried
//   on another prefill worker into the same lease, up to `max_prefill_attempts`; then the request
//   fails UNAVAILABLE with the last error.
// - decode: the decode worker adopts the lease and streams the rest of the tokens.
// - local: the decode (or mixed) worker prefills and decodes alone (GenerateTokens).
// - release: a lease the decode worker did not adopt is released exactly once, whatever ended
//   the request (a release after adoption is harmless: the worker answers NOT_FOUND).
// - Cancel() (client gone, deadline, stop string matched) cancels the call in flight, which the
//   worker turns into freeing the request's blocks, and releases the lease; a reservation in
//   flight is not cancelled (it could be granted with nobody left to release it): its lease is
//   released when it arrives.
// - a prefill whose attempts into one lease are all spent starts a new leg too (a fresh lease,
//   another decode worker first: the lease's worker may have died unnoticed).
// - migrate: when the worker streaming the tokens fails (its stream breaks: the process died,
//   shut down or lost the lease), or the registry drops a worker the request has a call on
//   (WorkerLoss: missed heartbeats, a stopped process), the request starts a new leg: the call
//   is cancelled, the lease released, and the request resumes from its prompt plus the tokens
//   already streamed, placed again by the same rules (another decode worker; a prefill worker
//   or locally), with max_tokens reduced by what was generated and the sampler's random draws
//   skipped, so greedy and seeded output equal an uninterrupted run's. Stop strings live above
//   the flow, so a partial match stays matched. The failed process is excluded (by worker id
//   and epoch: its restart is welcome). With no decode worker left the new leg waits for one
//   like a request waiting for room (up to `admission_timeout`). At most `max_migrations` legs
//   after the first; then UNAVAILABLE. Callbacks of an earlier leg are ignored.
//
// Thread-safe. The observer's methods are called one at a time, in order, never while the flow
// holds its lock (an observer may call Cancel() from OnTokens), from gRPC threads, the FlowClock's
// thread or the thread that calls Start/Cancel; they must not block. Exactly one of OnFinished /
// OnFailed is called, and nothing after it.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/timed_task_queue.h"
#include "router/router_metrics.h"
#include "router/worker_client.h"
#include "router/worker_registry.h"
#include "types/finish_reason.h"
#include "types/sampling_params.h"

namespace tandem::router {

struct RouterRequest {
  std::string id;
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  absl::Time deadline = absl::InfiniteFuture();
};

struct RequestUsage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_prompt_tokens = 0;
};

class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  // The prompt tokens served from a prefix cache, once known (before the first tokens, on the
  // first leg only); OnFinished's usage has it again.
  virtual void OnPromptCached(int32_t /*cached_prompt_tokens*/) {}
  // sampling.prompt_logprobs: prompt tokens 1 .. n-1's log-probabilities (n - 1 of them, as the
  // worker computed them), once, just before the first tokens. Not called when the worker sent
  // another count (a peer's count is not trusted).
  virtual void OnPromptLogprobs(std::span<const TokenLogprob> /*prompt_logprobs*/) {}
  // `logprobs`: one per token when the request asked for them, else empty.
  virtual void OnTokens(std::span<const int32_t> tokens, std::span<const TokenLogprob> logprobs) = 0;
  virtual void OnFinished(FinishReason reason, const RequestUsage& usage) = 0;
  virtual void OnFailed(const absl::Status& status) = 0;
};

struct FlowOptions {
  int32_t local_prefill_threshold = 0;  // prompts shorter than this prefill on the decode worker
  // > 0: the TTFT SLO of the local-prefill cost rule (placement::PrefillLocallyByCost); 0: off.
  absl::Duration local_prefill_ttft_slo = absl::ZeroDuration();
  int max_prefill_attempts = 3;
  // Times a request may resume on another worker after the one serving it failed (0 = never).
  int max_migrations = 3;
  // A reservation the router never comes back for (it died) frees itself after this long. It
  // covers the wait in the prefill worker's queue: the transfer that pins it starts with the
  // prompt's first computed chunk.
  absl::Duration lease_time = absl::Seconds(60);
  // How long one ReserveKv call may take (the decode worker answers between two iterations).
  absl::Duration reserve_timeout = absl::Seconds(10);
  // How long a request waits for a decode worker with room before it is refused (overload);
  // infinite: until the request's deadline (a later choice of an admitted request).
  absl::Duration admission_timeout = absl::Seconds(60);
  // Where the flow records queue time, retries, prefill mode and KV transfers (may be null).
  RouterMetrics* metrics = nullptr;
};

// What happened to a request, for metrics and tests.
struct FlowStats {
  bool disaggregated = false;  // prefilled on a prefill worker (else locally)
  bool local_by_cost = false;  // prefilled locally because a prefill worker would miss the TTFT SLO
  int prefill_attempts = 0;    // Prefill calls made in the current leg (1 + retries)
  int migrations = 0;          // legs after the first (resumed after a worker failed)
  // The successful prefill's KV hand-off, as the prefill worker measured it.
  double transfer_seconds = 0;
  int64_t transfer_bytes = 0;
};

// Time as a flow sees it: the present, and running a task later (the wait for KV room).
// Injected so that tests control time. Thread-safe.
class FlowClock {
 public:
  virtual ~FlowClock() = default;
  virtual absl::Time Now() = 0;
  // Runs `task` at `at` or later, on another thread. False (the task dropped) once the clock
  // is shutting down.
  virtual bool RunAt(absl::Time at, std::function<void()> task) = 0;
};

// Real time, delayed tasks on a TimedTaskQueue (borrowed).
class QueueClock final : public FlowClock {
 public:
  explicit QueueClock(TimedTaskQueue* queue) : queue_(queue) {}
  absl::Time Now() override { return absl::Now(); }
  bool RunAt(absl::Time at, std::function<void()> task) override { return queue_->Post(std::move(task), at); }

 private:
  TimedTaskQueue* queue_;
};

class RequestFlow : public std::enable_shared_from_this<RequestFlow> {
 public:
  // Starts the request. `registry` and `clock` (or `timer`, for real time) must outlive the
  // flow's activity; the flow keeps itself alive until it has ended and no call is in flight.
  static std::shared_ptr<RequestFlow> Start(RouterRequest request, const FlowOptions& options,
                                            WorkerRegistry* registry, FlowClock* clock,
                                            std::shared_ptr<RequestObserver> observer);
  static std::shared_ptr<RequestFlow> Start(RouterRequest request, const FlowOptions& options,
                                            WorkerRegistry* registry, TimedTaskQueue* timer,
                                            std::shared_ptr<RequestObserver> observer);
  ~RequestFlow();

  // Ends the request: OnFailed(CANCELLED) unless it had already ended (then a no-op).
  void Cancel();
  FlowStats stats() const;

 private:
  enum class Phase { kStarting, kReserving, kWaitingForRoom, kPrefilling, kDecoding, kGenerating, kEnded };
  class Events;  // delivers to the observer one at a time (request_flow.cc)
  static const char* PhaseName(Phase phase);

  RequestFlow(RouterRequest request, const FlowOptions& options, WorkerRegistry* registry, FlowClock* clock,
              std::shared_ptr<RequestObserver> observer);
  void Run();  // request_flow_placement.cc
  // Whether the cost rule (FlowOptions::local_prefill_ttft_slo) sends the leg to prefill locally.
  bool LocalByCost();
  void Reserve();
  void OnReserved(const std::shared_ptr<WorkerHandle>& decode, uint64_t leg,
                  absl::StatusOr<v1::ReserveKvResponse> answer);
  // Tries again later: Local() when `local`, else Reserve(); gives up at the admission timeout.
  void WaitForRoom(bool local = false);
  void Prefill();
  // Claims the prefill worker (registry's ClaimPrefill: `pending` tokens counted against it until
  // the call's answer, `ahead` its queue before them) and builds its request.
  std::optional<v1::PrefillRequest> PickPrefill(std::shared_ptr<WorkerHandle>& prefill,
                                                std::shared_ptr<CallCanceller>& cancel, int64_t& pending,
                                                int64_t& ahead);
  void OnPrefilled(const std::shared_ptr<WorkerHandle>& prefill, uint64_t leg,
                   absl::StatusOr<v1::PrefillResponse> answer);
  void Decode(int32_t first_token, int32_t rng_draws);
  void Local();
  WorkerClient::TokenStreamHandler StreamHandler(uint64_t leg);
  void OnStreamMessage(uint64_t leg, const v1::TokensResponse& msg);
  void OnStreamDone(uint64_t leg, const absl::Status& status);

  // Migration (request_flow_migrate.cc).
  bool Migratable(const absl::Status& stream_status) const;
  // Where a migration's new leg goes.
  enum class NextLeg {
    kElsewhere,       // never to `failed` (same process) again
    kElsewhereFirst,  // another decode worker first; `failed` only after them
    kLocalPrefill,    // `failed` was fine but no prefill worker could fill its lease: the new
                      // leg computes the prompt on a decode worker (it may be `failed`)
  };
  // Starts a new leg after `failed` failed (`cause`: the metric's label); false when the
  // request has migrated max_migrations times already (nothing done: the caller fails it).
  bool Migrate(const std::shared_ptr<WorkerHandle>& failed, const absl::Status& why, const char* cause,
               NextLeg next = NextLeg::kElsewhere);
  // Subscribes to `worker`'s WorkerLoss for leg `leg`. Called without mu_.
  void Watch(const std::shared_ptr<WorkerHandle>& worker, uint64_t leg);
  void Unwatch();
  void OnWorkerLost(const std::shared_ptr<WorkerHandle>& worker, uint64_t leg);
  // The current leg's prompt (the request's plus the tokens generated before the leg), its
  // sampling (max_tokens less those tokens) and the decode workers it must not use. mu_ held.
  std::vector<int32_t> LegPrompt() const;
  size_t LegPromptTokens() const { return request_.prompt.size() + leg_base_; }
  std::string LegRequestId() const;
  SamplingParams LegSampling() const;
  // A worker's prompt log-probabilities, when this request asked for them and has no tokens yet.
  std::vector<TokenLogprob> PromptLogprobsOf(
      const google::protobuf::RepeatedPtrField<v1::TokenLogprob>& prompt_logprobs) const;
  std::set<std::string> ExcludedDecode() const;
  // Records tokens the client is about to get (mu_ held); the migration latency on the first
  // tokens of a new leg.
  void NoteTokens(std::span<const int32_t> tokens, std::vector<TokenLogprob> logprobs = {},
                  std::vector<TokenLogprob> prompt_logprobs = {});
  void ReleaseLease();
  void Fail(const absl::Status& status);
  void Finish(FinishReason reason);
  // Records the time from the flow's start to its dispatch to a worker, once.
  void ObserveQueued();
  bool Ended() const;

  const RouterRequest request_;
  const FlowOptions options_;
  WorkerRegistry* const registry_;
  std::unique_ptr<QueueClock> own_clock_;  // when started with a TimedTaskQueue
  FlowClock* clock_;
  std::unique_ptr<Events> events_;
  const absl::Time start_;

  mutable std::mutex mu_;
  Phase phase_ = Phase::kStarting;
  std::shared_ptr<CallCanceller> call_;  // the cancellable call in flight
  std::shared_ptr<WorkerHandle> decode_;
  std::shared_ptr<WorkerHandle> prefill_;  // the current prefill attempt's worker
  std::set<std::string> tried_decode_, tried_prefill_;
  v1::ReserveKvResponse lease_;
  bool lease_held_ = false;  // reserved and not yet released (or adopted by a finished decode)
  bool decode_started_ = false;
  absl::Time wait_start_ = absl::InfinitePast();  // when it began waiting for KV room
  bool waiting_counted_ = false;                  // counted in the registry's AdmissionStats
  absl::Duration backoff_ = absl::Milliseconds(10);
  // Leaves the registry's count of waiting requests (once); `admitted`: it got its KV room.
  void StopWaiting(bool admitted);
  bool queue_observed_ = false;
  std::string last_prefill_error_;
  uint64_t leg_ = 0;                 // bumped by each migration
  std::vector<int32_t> generated_;   // every token the client got, in order
  int32_t rng_draws_ = 0;            // the sampler's random draws after generated_
  size_t leg_base_ = 0;              // generated_.size() when the current leg began
  bool leg_streamed_ = false;        // the current leg's stream delivered a message
  bool prefill_locally_next_leg_ = false;  // no prefill worker could fill the last leg's lease
  std::vector<std::pair<std::string, uint64_t>> failed_;  // workers (id, epoch) that failed it
  std::vector<std::pair<std::shared_ptr<WorkerLoss>, WorkerLoss::Id>> watches_;
  absl::Time migrated_at_ = absl::InfinitePast();  // the last migration, until its first token
  RequestUsage usage_;
  FinishReason finish_ = FinishReason::kNone;
  FlowStats stats_;
};

}  // namespace tandem::router
