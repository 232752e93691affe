// One completion's way back to its client, the same whichever door it came in through: the
// worker's tokens go through the ResponseAssembler (detokenization, stop strings, max_tokens),
// the router's metrics are kept (TTFT, ITL, end to end, tokens, requests by route and HTTP
// status, in flight, cancelled), the workers are told to stop as soon as the answer is complete
// (a stop string matched before the worker saw a stop) or the client went away, and the
// request ends exactly once: answered, failed, or cancelled by the client (status 499).
// What differs between the doors, the bytes on the wire, is a CompletionEncoder: SSE/JSON for
// HTTP (http_frontend.cc), v1.GenerateResponse messages for gRPC (grpc_frontend.cc).
//
// Thread-safety: every method may be called from any thread; the RequestObserver methods come
// from the flow's threads, Close from the door's. Each method takes the completion's lock and
// calls the encoder under it, one call at a time.
// Ownership: shared by the request flow (as its observer) and the door (which calls Close when
// its call is over; that also lets go of the flow, breaking the flow <-> observer cycle).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "api/api_error.h"
#include "api/response.h"
#include "api/response_assembler.h"
#include "router/request_flow.h"
#include "router/router_metrics.h"

namespace tandem::router {

// How a completion ended well.
struct CompletionEnd {
  api::ApiFinishReason finish = api::ApiFinishReason::kStop;
  api::Usage usage;
  int32_t cached_prompt_tokens = 0;  // known when the worker reported the end
  std::string_view text;             // everything shown (the body of a non-streamed answer)
};

// How one door writes a completion to its client. Called by Completion with its lock held,
// one call at a time, nothing after End or Fail; must not block or call into the Completion.
class CompletionEncoder {
 public:
  virtual ~CompletionEncoder() = default;
  // New text (may be empty: a stream may still start) and the tokens behind it; when the
  // request asked for log-probabilities, the tokens' (`raw`, as the worker computed them, and
  // `shown`, as the HTTP API words them; both empty otherwise).
  virtual void Delta(std::string_view text, std::span<const int32_t> tokens, std::span<const TokenLogprob> raw,
                     const std::vector<api::LogprobEntry>& shown) = 0;
  virtual void End(const CompletionEnd& end) = 0;
  // The request failed: `status` as it arose, `error` as the HTTP API words it.
  virtual void Fail(const absl::Status& status, const api::ApiError& error) = 0;
};

class Completion final : public RequestObserver {
 public:
  // `route` labels the metrics ("/v1/chat/completions", "grpc:Generate").
  Completion(std::string request_id, std::string route, std::unique_ptr<api::ResponseAssembler> assembler,
             std::unique_ptr<CompletionEncoder> encoder, RouterMetrics* metrics);

  // How to stop the request's work (the flow's Cancel). Set once, after the work started; if a
  // stop was wanted before (the flow can answer before it is set), it runs at once.
  void SetCancel(std::function<void()> cancel);
  // The door's call is over: the answer was delivered, or the client went away. In the second
  // case the request ends as cancelled by the client and its work is cancelled. Idempotent.
  void Close();

  void OnPromptCached(int32_t cached_prompt_tokens) override;
  void OnTokens(std::span<const int32_t> tokens, std::span<const TokenLogprob> logprobs) override;
  void OnFinished(FinishReason reason, const RequestUsage& usage) override;
  void OnFailed(const absl::Status& status) override;

 private:
  using Clock = std::chrono::steady_clock;

  void EndLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops the work (now, or as soon as SetCancel gives the means).
  void CancelWork();
  void ObserveTokenGap() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string request_id_;
  const std::string route_;
  RouterMetrics* const metrics_;
  const Clock::time_point start_ = Clock::now();

  std::mutex mu_;
  std::unique_ptr<api::ResponseAssembler> assembler_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<CompletionEncoder> encoder_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;    // ended: answered, failed or abandoned
  bool closed_ ABSL_GUARDED_BY(mu_) = false;  // the door's call is over
  bool cancel_pending_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> cancel_ ABSL_GUARDED_BY(mu_);
  bool seen_tokens_ ABSL_GUARDED_BY(mu_) = false;
  int32_t cached_prompt_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  Clock::time_point last_tokens_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem::router
