#include "router/completion.h"

#include "router/admission_stats.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "common/logging.h"

namespace tandem::router {
namespace {

double Seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

// One choice's flow reports to the completion under its choice number.
class ChoiceObserver final : public RequestObserver {
 public:
  ChoiceObserver(std::shared_ptr<Completion> completion, int32_t choice)
      : completion_(std::move(completion)), choice_(choice) {}
  void OnPromptCached(int32_t cached) override { completion_->OnPromptCached(choice_, cached); }
  void OnPromptLogprobs(std::span<const TokenLogprob> prompt_logprobs) override {
    completion_->OnPromptLogprobs(choice_, prompt_logprobs);
  }
  void OnTokens(std::span<const int32_t> tokens, std::span<const TokenLogprob> logprobs) override {
    completion_->OnTokens(choice_, tokens, logprobs);
  }
  void OnFinished(FinishReason reason, const RequestUsage& usage) override {
    completion_->OnFinished(choice_, reason, usage);
  }
  void OnFailed(const absl::Status& status) override { completion_->OnFailed(choice_, status); }

 private:
  const std::shared_ptr<Completion> completion_;
  const int32_t choice_;
};

}  // namespace

Completion::Completion(std::string request_id, std::string route,
                       std::vector<std::unique_ptr<api::ResponseAssembler>> assemblers, int32_t returned,
                       bool show_logprobs, std::unique_ptr<CompletionEncoder> encoder, RouterMetrics* metrics)
    : request_id_(std::move(request_id)),
      route_(std::move(route)),
      metrics_(metrics),
      generated_(static_cast<int32_t>(assemblers.size())),
      returned_(std::clamp<int32_t>(returned, 1, std::max<int32_t>(1, generated_))),
      show_logprobs_(show_logprobs),
      encoder_(std::move(encoder)) {
  choices_.resize(assemblers.size());
  for (size_t i = 0; i < assemblers.size(); ++i) choices_[i].assembler = std::move(assemblers[i]);
  running_ = generated_;
}

std::shared_ptr<RequestObserver> Completion::Observer(int32_t choice) {
  return std::make_shared<ChoiceObserver>(shared_from_this(), choice);
}

void Completion::SetStarter(std::function<void(int32_t)> start) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!done_) starter_ = std::move(start);
}

std::function<void(int32_t)> Completion::TakeStarterLocked() {
  std::function<void(int32_t)> start = std::move(starter_);
  starter_ = nullptr;
  return start;
}

void Completion::StartRest(std::function<void(int32_t)> start) {
  if (!start) return;
  for (int32_t i = 1; i < generated_; ++i) start(i);
}

void Completion::SetCancel(int32_t choice, std::function<void()> cancel) {
  bool now = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Choice& c = choices_[choice];
    now = c.cancel_pending;
    if (!closed_) c.cancel = cancel;  // once closed, holding it would only keep the flow alive
  }
  if (now) cancel();
}

void Completion::CancelWork(int32_t choice) {
  std::function<void()> cancel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Choice& c = choices_[choice];
    if (!c.cancel) {
      c.cancel_pending = true;
      return;
    }
    cancel = c.cancel;
  }
  cancel();
}

void Completion::CancelAll() {
  for (int32_t i = 0; i < generated_; ++i) CancelWork(i);
}

void Completion::Close() {
  bool abandoned = false;
  std::vector<std::function<void()>> cancels;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!done_) {
      done_ = true;
      abandoned = true;
      metrics_->requests->With({route_, "499"}).Increment();
      metrics_->inflight->Decrement();
      metrics_->cancelled->Increment();
    }
    closed_ = true;
    starter_ = nullptr;  // choices not started yet never start
    for (Choice& c : choices_) {
      if (abandoned && !c.cancel) c.cancel_pending = true;
      if (c.cancel) cancels.push_back(std::move(c.cancel));
      c.cancel = nullptr;
    }
  }
  if (!abandoned) return;
  GetLogger("router")->info("request={} cancelled: the client went away", request_id_);
  for (auto& cancel : cancels) cancel();
}

void Completion::ObserveTokenGap(Choice& choice, size_t num_tokens) {
  const Clock::time_point now = Clock::now();
  if (!seen_tokens_) {
    seen_tokens_ = true;
    first_token_at_ = now;
    metrics_->ttft->Observe(Seconds(now - start_));
  } else if (choice.seen_tokens && num_tokens > 0) {
    // Tokens that arrive together were generated together (speculative decoding keeps several
    // per iteration): the gap is shared, each token counted, so the histogram is the time per
    // output token that the ITL SLO and the controller judge.
    const double per_token = Seconds(now - choice.last_tokens) / static_cast<double>(num_tokens);
    for (size_t i = 0; i < num_tokens; ++i) metrics_->itl->Observe(per_token);
  }
  choice.seen_tokens = true;
  choice.last_tokens = now;
}

void Completion::OnPromptCached(int32_t choice, int32_t cached_prompt_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  if (choice == 0) cached_prompt_tokens_ = cached_prompt_tokens;
}

void Completion::ExpectPromptLogprobs(std::vector<int32_t> prompt, bool echoed) {
  std::lock_guard<std::mutex> lock(mu_);
  expect_prompt_logprobs_ = true;
  prompt_echoed_ = echoed;
  prompt_ = std::move(prompt);
}

void Completion::OnPromptLogprobs(int32_t choice, std::span<const TokenLogprob> prompt_logprobs) {
  std::lock_guard<std::mutex> lock(mu_);
  if (choice == 0 && !prompt_logprobs_) prompt_logprobs_.emplace(prompt_logprobs.begin(), prompt_logprobs.end());
}

bool Completion::ShowPromptLogprobsLocked(int32_t choice) {
  Choice& c = choices_[choice];
  if (!expect_prompt_logprobs_ || c.prompt_shown) return true;
  c.prompt_shown = true;
  if (!prompt_logprobs_) return false;
  std::vector<api::LogprobEntry> shown;
  if (show_logprobs_ && prompt_echoed_) shown = c.assembler->DescribePromptLogprobs(prompt_, *prompt_logprobs_);
  encoder_->PromptLogprobs(choice, prompt_, *prompt_logprobs_, shown);
  return true;
}

void Completion::OnTokens(int32_t choice, std::span<const int32_t> tokens, std::span<const TokenLogprob> logprobs) {
  bool prompt_shown;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_ || choices_[choice].done) return;
    prompt_shown = ShowPromptLogprobsLocked(choice);
  }
  if (!prompt_shown) {
    OnFailed(choice, absl::InternalError("the worker did not return the prompt's log-probabilities"));
    CancelWork(choice);
    return;
  }
  bool stop_early = false;
  std::function<void(int32_t)> start;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Choice& c = choices_[choice];
    if (done_ || c.done) return;
    ObserveTokenGap(c, tokens.size());
    const int32_t before = c.assembler->usage().completion_tokens;
    const api::AssembledDelta delta = c.assembler->Push(tokens);
    // Log-probabilities of the tokens the answer took (not of those after its end).
    const size_t taken = static_cast<size_t>(c.assembler->usage().completion_tokens - before);
    std::span<const TokenLogprob> raw = logprobs.first(std::min(logprobs.size(), taken));
    for (const TokenLogprob& l : raw) c.logprob_sum += l.logprob;
    c.logprob_count += static_cast<int32_t>(raw.size());
    if (!show_logprobs_) raw = {};
    std::vector<api::LogprobEntry> shown;
    if (!raw.empty()) shown = c.assembler->DescribeLogprobs(tokens.first(raw.size()), raw);
    encoder_->Delta(choice, delta.text, tokens, raw, shown);
    if (delta.finished) {
      stop_early = true;  // a stop string, stop token or max_tokens: the workers can stop
      ChoiceEndedLocked(choice);
    }
    if (choice == 0 && !done_) start = TakeStarterLocked();
  }
  StartRest(std::move(start));
  if (stop_early) CancelWork(choice);
}

void Completion::OnFinished(int32_t choice, FinishReason reason, const RequestUsage& usage) {
  std::function<void(int32_t)> start;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Choice& c = choices_[choice];
    if (done_ || c.done) return;
    const api::AssembledDelta delta = c.assembler->Finish(reason);
    encoder_->Delta(choice, delta.text, {}, {}, {});
    if (choice == 0) cached_prompt_tokens_ = usage.cached_prompt_tokens;
    ChoiceEndedLocked(choice);
    if (choice == 0 && !done_) start = TakeStarterLocked();
  }
  StartRest(std::move(start));
}

void Completion::OnFailed(int32_t choice, const absl::Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_ || choices_[choice].done) return;
    done_ = true;
    starter_ = nullptr;
    api::ApiError error = api::ApiError::FromStatus(status, request_id_);
    if (const int retry = RetryAfterOf(status); retry > 0) error.retry_after_seconds = retry;
    if (generated_ > 1) {
      GetLogger("router")->warn("request={} failed (choice {} of {}): {}", request_id_, choice, generated_,
                                status.ToString());
    } else {
      GetLogger("router")->warn("request={} failed: {}", request_id_, status.ToString());
    }
    metrics_->requests->With({route_, std::to_string(error.http_status)}).Increment();
    metrics_->inflight->Decrement();
    encoder_->Fail(status, error);
  }
  if (generated_ > 1) CancelAll();  // the siblings' work is of no use now
}

void Completion::ChoiceEndedLocked(int32_t choice) {
  choices_[choice].done = true;
  if (--running_ > 0) {
    encoder_->ChoiceEnd(choice, choices_[choice].assembler->finish_reason().value_or(api::ApiFinishReason::kStop));
    return;
  }
  EndLocked(choice);
}

std::vector<int32_t> Completion::ReturnedLocked() const {
  std::vector<int32_t> order(choices_.size());
  std::iota(order.begin(), order.end(), 0);
  if (returned_ < generated_) {
    // best_of: the highest mean log-probability per token first (OpenAI's "best"); ties keep
    // the generation order.
    auto mean = [this](int32_t i) {
      const Choice& c = choices_[i];
      return c.logprob_count > 0 ? c.logprob_sum / c.logprob_count : 0.0;
    };
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return mean(a) > mean(b); });
    order.resize(returned_);
  }
  return order;
}

void Completion::EndLocked(int32_t last) {
  done_ = true;
  CompletionEnd end;
  for (int32_t i : ReturnedLocked()) {
    const api::ResponseAssembler& a = *choices_[i].assembler;
    end.choices.push_back({i, a.finish_reason().value_or(api::ApiFinishReason::kStop), a.text()});
  }
  end.last = last;
  end.last_finish = choices_[last].assembler->finish_reason().value_or(api::ApiFinishReason::kStop);
  end.usage = choices_[0].assembler->usage();
  for (int32_t i = 1; i < generated_; ++i) end.usage.completion_tokens += choices_[i].assembler->usage().completion_tokens;
  end.usage.cached_tokens = cached_prompt_tokens_;
  end.cached_prompt_tokens = cached_prompt_tokens_;
  encoder_->End(end);
  metrics_->requests->With({route_, "200"}).Increment();
  metrics_->inflight->Decrement();
  const Clock::time_point now = Clock::now();
  metrics_->e2e->Observe(Seconds(now - start_));
  metrics_->generated_tokens->Observe(end.usage.completion_tokens);
  const int64_t first_choice_tokens = choices_[0].assembler->usage().completion_tokens;
  if (seen_tokens_ && first_choice_tokens >= 2) {
    metrics_->tpot->Observe(Seconds(now - first_token_at_) / static_cast<double>(first_choice_tokens - 1));
  }
}

}  // namespace tandem::router
