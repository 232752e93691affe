// RequestFlow's migration (request_flow.h, "migrate"): a new leg after the worker serving the
// request failed or was lost, resumed from the prompt plus the tokens already streamed.
#include "common/logging.h"
#include "common/strings.h"
#include "router/request_flow.h"
#include "rpc/convert.h"

namespace tandem::router {

bool RequestFlow::Migratable(const absl::Status& failure) const {
  switch (failure.code()) {
    case absl::StatusCode::kUnavailable:        // the process died, shut down or cannot be reached
    case absl::StatusCode::kInternal:           // its engine failed, or it ended without finishing
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kNotFound:           // its lease expired before the decode began
    case absl::StatusCode::kResourceExhausted:  // its queue or KV was full
      return true;
    case absl::StatusCode::kDeadlineExceeded:  // the call's, not the request's
      return clock_->Now() < request_.deadline;
    default:
      return false;  // the request itself is wrong (or not allowed): another worker won't help
  }
}

bool RequestFlow::Migrate(const std::shared_ptr<WorkerHandle>& failed, const absl::Status& why, const char* cause,
                          NextLeg next) {
  std::shared_ptr<CallCanceller> call;
  int migrations;
  size_t generated;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kEnded) return true;  // nothing left to save
    if (stats_.migrations >= options_.max_migrations) return false;
    migrations = ++stats_.migrations;
    ++leg_;
    call = std::move(call_);
    if (next == NextLeg::kElsewhere) failed_.emplace_back(failed->info.worker_id(), failed->info.epoch());
    phase_ = Phase::kStarting;
    decode_started_ = false;  // the old lease is released below, adopted or not
    tried_decode_.clear();
    if (next == NextLeg::kElsewhereFirst) tried_decode_.insert(failed->info.worker_id());
    prefill_locally_next_leg_ = next == NextLeg::kLocalPrefill;
    tried_prefill_.clear();
    stats_.prefill_attempts = 0;
    last_prefill_error_.clear();
    backoff_ = absl::Milliseconds(10);
    wait_start_ = absl::InfinitePast();
    finish_ = FinishReason::kNone;
    leg_base_ = generated_.size();
    leg_streamed_ = false;
    generated = generated_.size();
    migrated_at_ = clock_->Now();
  }
  if (next == NextLeg::kLocalPrefill) {
    GetLogger("router")->warn("request={} computes its prompt on a decode worker: {} (migration {} of at most {})",
                              request_.id, ToStd(why.message()), migrations, options_.max_migrations);
  } else {
    GetLogger("router")->warn(
        "request={} migrating after worker={} failed ({}): resuming from {} prompt + {} generated tokens "
        "(migration {} of at most {})",
        request_.id, failed->info.worker_id(), ToStd(why.message()), request_.prompt.size(), generated, migrations,
        options_.max_migrations);
  }
  if (options_.metrics != nullptr) options_.metrics->migrations->With({cause}).Increment();
  Unwatch();
  if (call) call->Cancel();  // the old leg's call: its callbacks are ignored from now on
  ReleaseLease();
  Run();
  return true;
}

void RequestFlow::Watch(const std::shared_ptr<WorkerHandle>& worker, uint64_t leg) {
  if (!worker) return;
  std::weak_ptr<RequestFlow> weak = weak_from_this();
  std::weak_ptr<WorkerHandle> weak_worker = worker;
  const std::shared_ptr<WorkerLoss> loss = worker->loss;
  const WorkerLoss::Id id = loss->Subscribe([weak, weak_worker, leg] {
    auto self = weak.lock();
    auto lost = weak_worker.lock();
    if (self && lost) self->OnWorkerLost(lost, leg);
  });
  if (id == 0) return;  // already lost: OnWorkerLost ran
  bool stale;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stale = phase_ == Phase::kEnded || leg != leg_;
    if (!stale) watches_.emplace_back(loss, id);
  }
  if (stale) loss->Unsubscribe(id);
}

void RequestFlow::Unwatch() {
  std::vector<std::pair<std::shared_ptr<WorkerLoss>, WorkerLoss::Id>> watches;
  {
    std::lock_guard<std::mutex> lock(mu_);
    watches.swap(watches_);
  }
  for (auto& [loss, id] : watches) loss->Unsubscribe(id);
}

void RequestFlow::OnWorkerLost(const std::shared_ptr<WorkerHandle>& worker, uint64_t leg) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase_ == Phase::kEnded || leg != leg_) return;
    auto is = [&worker](const std::shared_ptr<WorkerHandle>& h) {
      return h != nullptr && h->info.worker_id() == worker->info.worker_id() && h->info.epoch() == worker->info.epoch();
    };
    // The decode worker it is reserving on, prefilling into or streaming from; while
    // prefilling, also the current prefill attempt's worker (not one an earlier attempt left).
    const bool waits_on_decode = phase_ == Phase::kReserving || phase_ == Phase::kPrefilling ||
                                 phase_ == Phase::kDecoding || phase_ == Phase::kGenerating;
    if (!(waits_on_decode && is(decode_)) && !(phase_ == Phase::kPrefilling && is(prefill_))) return;
  }
  const absl::Status why = absl::UnavailableError(
      StrCat("worker ", worker->info.worker_id(), " was dropped by the registry (missed heartbeats or replaced)"));
  if (Migrate(worker, why, "worker_lost")) return;
  Fail(absl::UnavailableError(StrCat(why.message(), "; the request already moved ", options_.max_migrations,
                                     " times")));
}

std::string RequestFlow::LegRequestId() const {
  // The workers' id of the request: a new leg may land where the old one's cancel is still
  // being processed, so each leg has its own ("<id>.1" after the first migration; the router's
  // logs name both).
  return leg_ == 0 ? request_.id : StrCat(request_.id, ".", leg_);
}

std::vector<int32_t> RequestFlow::LegPrompt() const {
  std::vector<int32_t> prompt = request_.prompt;
  prompt.insert(prompt.end(), generated_.begin(), generated_.begin() + static_cast<std::ptrdiff_t>(leg_base_));
  return prompt;
}

SamplingParams RequestFlow::LegSampling() const {
  SamplingParams s = request_.sampling;
  s.max_tokens -= static_cast<int>(leg_base_);
  s.output_in_prompt = static_cast<int32_t>(leg_base_);  // the penalties count them as output
  if (leg_base_ > 0) s.prompt_logprobs = -1;  // delivered with the first tokens, by the first leg
  return s;
}

std::vector<TokenLogprob> RequestFlow::PromptLogprobsOf(
    const google::protobuf::RepeatedPtrField<v1::TokenLogprob>& prompt_logprobs) const {
  std::vector<TokenLogprob> out;
  // Only the first leg's first tokens carry them (LegSampling asks no later leg).
  if (request_.sampling.prompt_logprobs < 0 || !generated_.empty()) return out;
  for (const v1::TokenLogprob& l : prompt_logprobs) out.push_back(rpc::FromProto(l));
  return out;
}

std::set<std::string> RequestFlow::ExcludedDecode() const {
  std::set<std::string> excluded = tried_decode_;
  for (const auto& [id, epoch] : failed_) {
    // The same process; a restarted one (new epoch) is welcome.
    if (auto handle = registry_->Find(id); handle != nullptr && handle->info.epoch() == epoch) excluded.insert(id);
  }
  return excluded;
}

}  // namespace tandem::router
