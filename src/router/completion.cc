#include "router/completion.h"

#include "router/admission_stats.h"

#include <algorithm>
#include <utility>

#include "common/logging.h"

namespace tandem::router {
namespace {

double Seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

Completion::Completion(std::string request_id, std::string route, std::unique_ptr<api::ResponseAssembler> assembler,
                       std::unique_ptr<CompletionEncoder> encoder, RouterMetrics* metrics)
    : request_id_(std::move(request_id)),
      route_(std::move(route)),
      metrics_(metrics),
      assembler_(std::move(assembler)),
      encoder_(std::move(encoder)) {}

void Completion::SetCancel(std::function<void()> cancel) {
  bool now = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    now = cancel_pending_;
    if (!closed_) cancel_ = cancel;  // once closed, holding it would only keep the flow alive
  }
  if (now) cancel();
}

void Completion::CancelWork() {
  std::function<void()> cancel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!cancel_) {
      cancel_pending_ = true;
      return;
    }
    cancel = cancel_;
  }
  cancel();
}

void Completion::Close() {
  bool abandoned = false;
  std::function<void()> cancel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!done_) {
      done_ = true;
      abandoned = true;
      metrics_->requests->With({route_, "499"}).Increment();
      metrics_->inflight->Decrement();
      metrics_->cancelled->Increment();
      if (!cancel_) cancel_pending_ = true;
    }
    closed_ = true;
    cancel = std::move(cancel_);
    cancel_ = nullptr;
  }
  if (!abandoned) return;
  GetLogger("router")->info("request={} cancelled: the client went away", request_id_);
  if (cancel) cancel();
}

void Completion::ObserveTokenGap() {
  const Clock::time_point now = Clock::now();
  if (!seen_tokens_) {
    seen_tokens_ = true;
    metrics_->ttft->Observe(Seconds(now - start_));
  } else {
    metrics_->itl->Observe(Seconds(now - last_tokens_));
  }
  // Tokens that arrive together were generated together: their gaps are not observable.
  last_tokens_ = now;
}

void Completion::OnPromptCached(int32_t cached_prompt_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  cached_prompt_tokens_ = cached_prompt_tokens;
}

void Completion::OnTokens(std::span<const int32_t> tokens, std::span<const TokenLogprob> logprobs) {
  bool stop_early = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return;
    ObserveTokenGap();
    const int32_t before = assembler_->usage().completion_tokens;
    const api::AssembledDelta delta = assembler_->Push(tokens);
    // Log-probabilities of the tokens the answer took (not of those after its end).
    const size_t taken = static_cast<size_t>(assembler_->usage().completion_tokens - before);
    std::span<const TokenLogprob> raw = logprobs.first(std::min(logprobs.size(), taken));
    std::vector<api::LogprobEntry> shown;
    if (!raw.empty()) shown = assembler_->DescribeLogprobs(tokens.first(raw.size()), raw);
    encoder_->Delta(delta.text, tokens, raw, shown);
    if (delta.finished) {
      EndLocked();
      stop_early = true;  // a stop string, stop token or max_tokens: the workers can stop
    }
  }
  if (stop_early) CancelWork();
}

void Completion::OnFinished(FinishReason reason, const RequestUsage& usage) {
  std::lock_guard<std::mutex> lock(mu_);
  if (done_) return;
  const api::AssembledDelta delta = assembler_->Finish(reason);
  encoder_->Delta(delta.text, {}, {}, {});
  cached_prompt_tokens_ = usage.cached_prompt_tokens;
  EndLocked();
}

void Completion::OnFailed(const absl::Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (done_) return;
  done_ = true;
  api::ApiError error = api::ApiError::FromStatus(status, request_id_);
  if (const int retry = RetryAfterOf(status); retry > 0) error.retry_after_seconds = retry;
  GetLogger("router")->warn("request={} failed: {}", request_id_, status.ToString());
  metrics_->requests->With({route_, std::to_string(error.http_status)}).Increment();
  metrics_->inflight->Decrement();
  encoder_->Fail(status, error);
}

void Completion::EndLocked() {
  done_ = true;
  CompletionEnd end;
  end.finish = assembler_->finish_reason().value_or(api::ApiFinishReason::kStop);
  end.usage = assembler_->usage();
  end.usage.cached_tokens = cached_prompt_tokens_;
  end.cached_prompt_tokens = cached_prompt_tokens_;
  end.text = assembler_->text();
  encoder_->End(end);
  metrics_->requests->With({route_, "200"}).Increment();
  metrics_->inflight->Decrement();
  metrics_->e2e->Observe(Seconds(Clock::now() - start_));
  metrics_->generated_tokens->Observe(end.usage.completion_tokens);
}

}  // namespace tandem::router
