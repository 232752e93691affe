// One completion's way back to its client, the same whichever door it came in through: the
// worker's tokens go through the ResponseAssembler (detokenization, stop strings, max_tokens),
// the router's metrics are kept (TTFT, ITL, end to end, tokens, requests by route and HTTP
// status, in flight, cancelled), the workers are told to stop as soon as the answer is complete
// (a stop string matched before the worker saw a stop) or the client went away, and the
// request ends exactly once: answered, failed, or cancelled by the client (status 499).
// What differs between the doors, the bytes on the wire, is a CompletionEncoder: SSE/JSON for
// HTTP (http_frontend.cc), v1.GenerateResponse messages for gRPC (grpc_frontend.cc).
//
// Choices (n > 1, best_of): each generated choice is a request flow of its own with its own
// assembler; choice 0 runs first, and the others start once it has its first token (or ended),
// so that they find the prompt's KV in the prefix cache the first one filled instead of
// computing it again. The request ends when every choice has ended; any choice's failure fails
// the whole request (the others are cancelled). With best_of > n (never streamed), the n choices
// with the highest mean log-probability per token are returned, best first.
//
// Thread-safety: every method may be called from any thread; the observers' methods come from
// the flows' threads, Close from the door's. Each method takes the completion's lock and calls
// the encoder under it, one call at a time.
// Ownership: shared by the request flows (through their observers) and the door (which calls
// Close when its call is over; that also lets go of the flows, breaking the flow <-> observer
// cycle).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "api/api_error.h"
#include "api/response.h"
#include "api/response_assembler.h"
#include "router/request_flow.h"
#include "router/router_metrics.h"

namespace tandem::router {

// One choice of the answer.
struct ChoiceResult {
  int32_t choice = 0;  // the generated choice it is (with best_of > n, not its index in the answer)
  api::ApiFinishReason finish = api::ApiFinishReason::kStop;
  std::string_view text;  // everything shown (the body of a non-streamed answer)
};

// How a completion ended well.
struct CompletionEnd {
  // The answer's choices in order (index i of the answer is choices[i]).
  std::vector<ChoiceResult> choices;
  int32_t last = 0;  // the generated choice that ended last
  api::ApiFinishReason last_finish = api::ApiFinishReason::kStop;
  api::Usage usage;                  // completion tokens of every generated choice together
  int32_t cached_prompt_tokens = 0;  // known when the worker reported the end (choice 0's)
};

// How one door writes a completion to its client. Called by Completion with its lock held,
// one call at a time, nothing after End or Fail; must not block or call into the Completion.
class CompletionEncoder {
 public:
  virtual ~CompletionEncoder() = default;
  // New text of generated choice `choice` (may be empty: a stream may still start) and the
  // tokens behind it; when the request asked for log-probabilities, the tokens' (`raw`, as the
  // worker computed them, and `shown`, as the HTTP API words them; both empty otherwise).
  virtual void Delta(int32_t choice, std::string_view text, std::span<const int32_t> tokens,
                     std::span<const TokenLogprob> raw, const std::vector<api::LogprobEntry>& shown) = 0;
  // The prompt's log-probabilities (sampling.prompt_logprobs), just before choice `choice`'s first
  // Delta: `prompt` (the prompt's tokens), `raw` (prompt.size() - 1 of them, for tokens 1 ..) and
  // `shown` (the HTTP API's entries, the first unscored; empty unless logprobs were asked for).
  virtual void PromptLogprobs(int32_t /*choice*/, std::span<const int32_t> /*prompt*/,
                              std::span<const TokenLogprob> /*raw*/, const std::vector<api::LogprobEntry>& /*shown*/) {}
  // Choice `choice` ended while others still run (the last one to end comes with End).
  virtual void ChoiceEnd(int32_t /*choice*/, api::ApiFinishReason /*finish*/) {}
  virtual void End(const CompletionEnd& end) = 0;
  // The request failed: `status` as it arose, `error` as the HTTP API words it.
  virtual void Fail(const absl::Status& status, const api::ApiError& error) = 0;
};

class Completion final : public std::enable_shared_from_this<Completion> {
 public:
  // One assembler per generated choice (best_of of them); the best `returned` are the answer.
  // `route` labels the metrics ("/v1/chat/completions", "grpc:Generate"). `show_logprobs`:
  // whether the client asked for log-probabilities (best_of may need them when it did not).
  Completion(std::string request_id, std::string route, std::vector<std::unique_ptr<api::ResponseAssembler>> assemblers,
             int32_t returned, bool show_logprobs, std::unique_ptr<CompletionEncoder> encoder, RouterMetrics* metrics);

  int32_t generated_choices() const { return generated_; }
  // The observer of generated choice `choice`'s flow.
  std::shared_ptr<RequestObserver> Observer(int32_t choice);
  // How to start generated choice `choice` (1 .. best_of-1): called once for each, outside the
  // lock, after choice 0's first tokens (or its end). Set before choice 0 starts.
  void SetStarter(std::function<void(int32_t choice)> start);
  // How to stop choice `choice`'s work (the flow's Cancel). Set once, after the work started;
  // if a stop was wanted before (the flow can answer before it is set), it runs at once.
  void SetCancel(int32_t choice, std::function<void()> cancel);
  // The door's call is over: the answer was delivered, or the client went away. In the second
  // case the request ends as cancelled by the client and its work is cancelled. Idempotent.
  void Close();

  // The request asked for its prompt's log-probabilities: choice 0's flow computes them (the
  // others' do not), every choice's answer starts with them. `echoed`: completions' echo with
  // logprobs, whose answer shows them as LogprobEntry's (built only then; vLLM's prompt_logprobs
  // and gRPC read the raw rows). Call before choice 0 starts.
  void ExpectPromptLogprobs(std::vector<int32_t> prompt, bool echoed);

  void OnPromptCached(int32_t choice, int32_t cached_prompt_tokens);
  void OnPromptLogprobs(int32_t choice, std::span<const TokenLogprob> prompt_logprobs);
  void OnTokens(int32_t choice, std::span<const int32_t> tokens, std::span<const TokenLogprob> logprobs);
  void OnFinished(int32_t choice, FinishReason reason, const RequestUsage& usage);
  void OnFailed(int32_t choice, const absl::Status& status);

 private:
  using Clock = std::chrono::steady_clock;

  struct Choice {
    std::unique_ptr<api::ResponseAssembler> assembler;
    bool done = false;
    bool cancel_pending = false;
    std::function<void()> cancel;
    Clock::time_point last_tokens;
    bool seen_tokens = false;
    bool prompt_shown = false;  // its answer has the prompt's log-probabilities (when expected)
    double logprob_sum = 0;  // of the tokens the answer took, for best_of
    int32_t logprob_count = 0;
  };

  // Choice `choice` ended; the request ends with the last one.
  void ChoiceEndedLocked(int32_t choice) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EndLocked(int32_t last) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The answer's choices, best first when best_of > n.
  std::vector<int32_t> ReturnedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops choice `choice`'s work (now, or as soon as SetCancel gives the means).
  void CancelWork(int32_t choice);
  // Stops every choice's work.
  void CancelAll();
  // The starter, taken out once choice 0 has made progress (null if taken or never set).
  std::function<void(int32_t)> TakeStarterLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartRest(std::function<void(int32_t)> start);
  void ObserveTokenGap(Choice& choice, size_t num_tokens) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands the encoder the prompt's log-probabilities before choice `choice`'s first tokens, when
  // expected. False when they were expected and never arrived.
  bool ShowPromptLogprobsLocked(int32_t choice) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string request_id_;
  const std::string route_;
  RouterMetrics* const metrics_;
  const Clock::time_point start_ = Clock::now();
  const int32_t generated_;
  const int32_t returned_;
  const bool show_logprobs_;

  std::mutex mu_;
  std::vector<Choice> choices_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<CompletionEncoder> encoder_ ABSL_GUARDED_BY(mu_);
  std::function<void(int32_t)> starter_ ABSL_GUARDED_BY(mu_);
  int32_t running_ ABSL_GUARDED_BY(mu_) = 0;  // choices not ended yet
  bool done_ ABSL_GUARDED_BY(mu_) = false;    // ended: answered, failed or abandoned
  bool closed_ ABSL_GUARDED_BY(mu_) = false;  // the door's call is over
  bool seen_tokens_ ABSL_GUARDED_BY(mu_) = false;
  Clock::time_point first_token_at_ ABSL_GUARDED_BY(mu_);
  int32_t cached_prompt_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  bool expect_prompt_logprobs_ ABSL_GUARDED_BY(mu_) = false;
  bool prompt_echoed_ ABSL_GUARDED_BY(mu_) = false;  // ExpectPromptLogprobs' `echoed`
  std::vector<int32_t> prompt_ ABSL_GUARDED_BY(mu_);  // when expected
  std::optional<std::vector<TokenLogprob>> prompt_logprobs_ ABSL_GUARDED_BY(mu_);  // choice 0's, once arrived
};

}  // namespace tandem::router
