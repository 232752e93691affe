// What a request flow asks of one worker (docs/request-path.md), as an interface so that the
// flow can be tested against a hand-written fake and the gRPC details stay in one place
// (GrpcWorkerClient). Requests and answers are the v1 worker messages; errors are absl::Status
// with the worker's code and message (gRPC codes and absl codes are the same numbers).
//
// Threads: every method may be called from any thread and returns without waiting for the
// worker. Each callback runs exactly once (a stream's on_message any number of times before its
// on_done), on a thread of the client's choosing: a gRPC callback thread for GrpcWorkerClient,
// possibly the caller's own thread inside the call (a fake answering at once does that), so a
// caller must not hold a lock its callback takes. Callbacks must not block.
//
// Ownership: the client copies what it needs of a request before returning; callbacks, the
// CallCanceller and whatever they capture are kept until the call ends.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/v1/worker.pb.h"

namespace tandem::router {

// Cancels one call in flight. The caller creates it and passes it with the call; the client
// sets the action that stops the call once the call has started. A cancelled call still runs
// its callback (usually with CANCELLED, or with a result that won the race). Thread-safe.
class CallCanceller {
 public:
  // Stops the call: runs the action now, or when the client sets it. Idempotent.
  void Cancel();
  // For the client, once per call. Runs `action` at once if Cancel came first.
  void SetAction(std::function<void()> action);
  bool cancelled() const;

 private:
  mutable std::mutex mu_;
  bool cancelled_ = false;
  std::function<void()> action_;
};

class WorkerClient {
 public:
  using ReserveDone = std::function<void(absl::StatusOr<v1::ReserveKvResponse>)>;
  using PrefillDone = std::function<void(absl::StatusOr<v1::PrefillResponse>)>;
  using DrainDone = std::function<void(absl::StatusOr<v1::DrainResponse>)>;
  using StatusDone = std::function<void(absl::Status)>;
  // A server stream of tokens (Decode, GenerateTokens).
  struct TokenStreamHandler {
    std::function<void(const v1::TokensResponse&)> on_message;  // in order, one at a time
    std::function<void(const absl::Status&)> on_done;            // once, after the last message
  };

  virtual ~WorkerClient() = default;

  // Decode worker: reserve KV blocks for a prompt under a lease. Not cancellable: a
  // reservation cancelled in flight could be granted with nobody left to release it.
  virtual void ReserveKv(const v1::ReserveKvRequest& request, absl::Time deadline, ReserveDone done) = 0;
  // Prefill worker: compute the prompt, send its KV into the request's lease, sample the first
  // token. Cancelling it makes the worker free what it holds for the request.
  virtual void Prefill(const v1::PrefillRequest& request, absl::Time deadline, std::shared_ptr<CallCanceller> cancel,
                       PrefillDone done) = 0;
  // Decode worker: adopt the filled lease and stream the rest of the tokens.
  virtual void Decode(const v1::DecodeRequest& request, absl::Time deadline, std::shared_ptr<CallCanceller> cancel,
                      TokenStreamHandler handler) = 0;
  // Decode or mixed worker: prefill and decode locally, streaming the tokens.
  virtual void GenerateTokens(const v1::GenerateTokensRequest& request, absl::Time deadline,
                              std::shared_ptr<CallCanceller> cancel, TokenStreamHandler handler) = 0;
  // Frees an unused lease. Fire and forget: a lease nobody releases expires on the worker.
  virtual void ReleaseKv(const std::string& lease_id) = 0;

  // Operator calls (RouterAdmin): stop taking new work; change role.
  virtual void Drain(absl::Time deadline, DrainDone done) = 0;
  virtual void SetRole(v1::WorkerRole role, absl::Time deadline, StatusDone done) = 0;
};

}  // namespace tandem::router
