// One request's way through the workers (DESIGN.md "Request path"):
//   disaggregated: reserve KV on a decode worker (a lease), prefill on a prefill worker that
//   sends the KV into the lease and returns the first token, then decode on the decode worker
//   from the lease; a prefill that fails before the first token is retried on another prefill
//   worker (the lease stays valid), a full decode worker is skipped for the next one;
//   local (conditional disaggregation): prompts shorter than a threshold, or clusters without
//   prefill workers, run end to end on one decode or mixed worker.
// Cancel() (client gone, deadline, stop string matched) cancels the call in flight, which the
// worker turns into freeing the request's blocks, and releases an unused lease. The observer then
// gets OnFailed(CANCELLED) unless the request had already ended.
//
// Thread-safe. The observer's methods are called one at a time, from gRPC threads, and must
// not block; exactly one of OnFinished / OnFailed is called, last.
#pragma once

#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "types/finish_reason.h"
#include "types/sampling_params.h"
#include "router/router_metrics.h"
#include "router/worker_registry.h"
#include "tandem/v1/worker.grpc.pb.h"
#include "common/timed_task_queue.h"

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
  virtual void OnTokens(std::span<const int32_t> tokens) = 0;
  virtual void OnFinished(FinishReason reason, const RequestUsage& usage) = 0;
  virtual void OnFailed(const absl::Status& status) = 0;
};

struct FlowOptions {
  int32_t local_prefill_threshold = 0;  // prompts shorter than this prefill on the decode worker
  int max_prefill_attempts = 3;
  int max_decode_choices = 3;
  // A reservation the router never comes back for (it died) frees itself after this long. It
  // covers the wait in the prefill worker's queue: the transfer that pins it starts with the
  // prompt's first computed chunk.
  absl::Duration lease_time = absl::Seconds(60);
  int32_t kv_block_size = 16;           // to estimate a prompt's blocks when picking a worker
  // How long a request waits for a decode worker with room before it is refused (overload).
  absl::Duration admission_timeout = absl::Seconds(60);
  // Where the flow records queue time, retries, prefill mode and KV transfers (may be null).
  RouterMetrics* metrics = nullptr;
};

// What happened to a request, for metrics.
struct FlowStats {
  bool disaggregated = false;
  int prefill_attempts = 0;
  double transfer_seconds = 0;
  int64_t transfer_bytes = 0;
};

class RequestFlow : public std::enable_shared_from_this<RequestFlow> {
 public:
  // `timer` runs delayed retries (waiting for KV room); it and `registry` must outlive the flow's
  // activity.
  static std::shared_ptr<RequestFlow> Start(RouterRequest request, const FlowOptions& options,
                                            WorkerRegistry* registry, TimedTaskQueue* timer,
                                            std::shared_ptr<RequestObserver> observer);
  void Cancel();
  FlowStats stats() const;

  // Internal (used by the stream readers).
  void OnStreamMessage(const v1::TokensResponse& msg);
  void OnStreamDone(const grpc::Status& status);

 private:
  RequestFlow(RouterRequest request, const FlowOptions& options, WorkerRegistry* registry,
              TimedTaskQueue* timer, std::shared_ptr<RequestObserver> observer);
  void WaitForRoom(int64_t blocks);
  void Run();
  void Reserve();
  void Prefill();
  void Decode(int32_t first_token, int32_t rng_draws);
  void Local();
  void ReleaseLease();
  void Fail(const absl::Status& status);
  void Finish(FinishReason reason);
  bool Ended();  // cancelled or already finished

  const RouterRequest request_;
  const FlowOptions options_;
  WorkerRegistry* registry_;
  TimedTaskQueue* timer_;
  std::shared_ptr<RequestObserver> observer_;

  mutable std::mutex mu_;
  bool ended_ = false;
  bool cancelled_ = false;
  std::shared_ptr<grpc::ClientContext> active_;  // the call in flight
  std::shared_ptr<WorkerHandle> decode_, prefill_;
  std::set<std::string> tried_decode_, tried_prefill_;
  v1::ReserveKvResponse lease_;
  bool lease_held_ = false;  // reserved and not yet released (or adopted by a finished decode)
  bool decode_started_ = false;
  absl::Time wait_start_ = absl::InfinitePast();  // when it began waiting for KV room
  const absl::Time start_ = absl::Now();
  bool queue_observed_ = false;
  absl::Duration backoff_ = absl::Milliseconds(10);
  std::string last_prefill_error_;
  RequestUsage usage_;
  FinishReason finish_ = FinishReason::kNone;
  FlowStats stats_;

  // Records the time from the flow's start to its dispatch to a worker, once.
  void ObserveQueued();
};

}  // namespace tandem::router
