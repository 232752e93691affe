// RequestFlow's first decision (request_flow.h): where the leg's prompt is computed, on a prefill
// worker (disaggregated) or on the decode worker that will generate (local).
#include "common/logging.h"
#include "router/placement.h"
#include "router/request_flow.h"

namespace tandem::router {

void RequestFlow::Run() {
  const int prefill_workers = registry_->CountRole(v1::WORKER_ROLE_PREFILL);
  int64_t tokens;
  bool fallback;  // the last leg found no prefill worker for its lease
  {
    std::lock_guard<std::mutex> lock(mu_);
    tokens = static_cast<int64_t>(LegPromptTokens());
    fallback = std::exchange(prefill_locally_next_leg_, false);
  }
  const bool by_rule =
      fallback || placement::PrefillLocally(tokens, options_.local_prefill_threshold, prefill_workers);
  const bool by_cost = !by_rule && LocalByCost();
  if (by_rule || by_cost) {
    if (options_.metrics != nullptr) {
      options_.metrics->prefills->With({fallback ? "local_fallback" : by_cost ? "local_by_cost" : "local"}).Increment();
    }
    if (by_cost) {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.local_by_cost = true;
    }
    Local();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.disaggregated = true;
  }
  if (options_.metrics != nullptr) options_.metrics->prefills->With({"disaggregated"}).Increment();
  Reserve();
}

bool RequestFlow::LocalByCost() {
  if (options_.local_prefill_ttft_slo <= absl::ZeroDuration()) return false;
  std::vector<int32_t> prompt;
  {
    std::lock_guard<std::mutex> lock(mu_);
    prompt = LegPrompt();
  }
  const PrefillOutlook outlook = registry_->Outlook(prompt);
  placement::PrefillCostInputs in;
  in.ttft_slo_s = absl::ToDoubleSeconds(options_.local_prefill_ttft_slo);
  in.waited_s = absl::ToDoubleSeconds(clock_->Now() - start_);
  in.tokens_per_s = outlook.tokens_per_s;
  in.disaggregated_tokens = outlook.disaggregated_tokens;
  in.local_tokens = outlook.local_tokens;
  const bool local = placement::PrefillLocallyByCost(in);
  if (local) {
    GetLogger("router")->debug("request={} prefills locally: {} tokens ahead on a prefill worker, {} on a decode worker, at {:.0f} "
                 "tokens/s against {:.3f} s left of the TTFT SLO",
                 request_.id, in.disaggregated_tokens, in.local_tokens, in.tokens_per_s, in.ttft_slo_s - in.waited_s);
  }
  return local;
}

}  // namespace tandem::router
