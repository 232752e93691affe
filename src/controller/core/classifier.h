// Classifier: names the traffic the cluster sees relative to the instances it has —
// prompt-heavy (short of prefill), generation-heavy (short of decode) or balanced — with
// hysteresis, so that the class (a dashboard label and the planner's tie-breaker) does not
// flicker around a boundary.
//
// Demand (EstimateDemand, shared with the planner), in instance-equivalents at 100% busy:
//   prefill_demand = prompt_token_rate × (1 − prompt_cached_fraction)
//                    / prefill_tokens_per_busy_second
//                    (prompt_token_rate falls back to arrival_rate × prompt_tokens_mean; no
//                    cache measurement counts every prompt token): the tokens to compute, in
//                    the unit of the capacity, which counts computed tokens only.
//   decode_demand  = arrival_rate × output_tokens_mean / decode_tokens_per_busy_second
//   (zero arrivals → zero demand even before any capacity was measured).
// Pressure: a role that misses its target is short by at least the ratio of the miss
// (DistServe sizes each phase for its own SLO: TTFT for prefill, ITL/TPOT for decode):
//   prefill_pressure = max(prefill_demand, P × ttft_p99/ttft_slo)          if that ratio > 1
//   decode_pressure  = max(decode_demand,  D × itl_p99/itl_slo,
//                                         D × kv_utilization/kv_target)    for ratios > 1
//   where P, D are the current instance counts. A TTFT miss that is mostly time spent waiting
//   for a decode worker with KV room (queue_p99 >= kQueueShareOfTtft × ttft_p99) is decode's
//   pressure, not prefill's.
// Score = prefill_pressure / (prefill_pressure + decode_pressure) − P / (P + D): how much larger
// the prefill share of the demand is than the prefill share of the instances (−1..1).
//
// Class rule (enter > exit; both from ClassifierOptions):
//   balanced         → prompt_heavy if score ≥ enter, generation_heavy if score ≤ −enter
//   prompt_heavy     stays while score > exit; → generation_heavy if score ≤ −enter;
//                    otherwise → balanced
//   generation_heavy mirrors prompt_heavy.
//   A change happens only when min_dwell_s have passed since the previous change (the first
//   change may happen at once). When the score cannot be computed — a capacity not yet
//   measured, no traffic at all — the class stays as it is.
//
// Not thread-safe: the control loop owns one.
#pragma once

#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "controller/core/signals.h"

namespace tandem::controller {

enum class TrafficClass { kBalanced, kPromptHeavy, kGenerationHeavy };

// "balanced", "prompt_heavy", "generation_heavy" (metric label values).
const char* TrafficClassName(TrafficClass c);
std::optional<TrafficClass> ParseTrafficClass(std::string_view name);

// The latency and KV targets both the classifier and the planner measure pressure against.
struct SloTargets {
  double ttft_slo_s = 2.0;
  double itl_slo_s = 0.2;
  double kv_target_utilization = 0.8;
};

// The numbers behind a classification and a plan (the decision log shows all of them). NaN
// where the inputs were missing.
struct DemandEstimate {
  static constexpr double kQueueShareOfTtft = 0.5;

  double prefill_load = kNoData;      // prompt tokens/s to compute (prefix-cache hits excluded)
  double cached_fraction = kNoData;   // share of prompt tokens served from a prefix cache
  double decode_load = kNoData;       // output tokens/s to generate
  double prefill_capacity = kNoData;  // measured tokens per busy second, per prefill instance
  double decode_capacity = kNoData;   // measured tokens per busy second, per decode instance
  double prefill_demand = kNoData;    // instance-equivalents at 100% busy
  double decode_demand = kNoData;
  // The loads forecast for when a worker started now would be ready (the planner's; NaN when
  // there is no forecast), and that horizon.
  double prefill_load_ahead = kNoData;
  double decode_load_ahead = kNoData;
  double prefill_horizon_s = kNoData;
  double decode_horizon_s = kNoData;
  double ttft_ratio = kNoData;  // ttft_p99 / ttft_slo
  double itl_ratio = kNoData;   // itl_p99 / itl_slo
  double kv_ratio = kNoData;    // kv_utilization / kv_target_utilization
  bool ttft_from_queue = false;  // TTFT is mostly waiting for decode KV room
  double prefill_pressure = kNoData;
  double decode_pressure = kNoData;
  double demand_prefill_share = kNoData;    // prefill_pressure / (sum of pressures)
  double instance_prefill_share = kNoData;  // P / (P + D)
  double score = kNoData;                   // demand share − instance share

  bool ttft_over_slo() const { return HasData(ttft_ratio) && ttft_ratio > 1; }
  bool itl_over_slo() const { return HasData(itl_ratio) && itl_ratio > 1; }
  bool kv_over_target() const { return HasData(kv_ratio) && kv_ratio > 1; }
};

DemandEstimate EstimateDemand(const Signals& smoothed, const InstanceCounts& current,
                              const SloTargets& slo);

struct ClassifierOptions {
  double enter_threshold = 0.15;  // |score| that enters a non-balanced class
  double exit_threshold = 0.05;   // score (towards the class) below which it is left
  double min_dwell_s = 30;        // least time between two changes of class
  SloTargets slo;
};

absl::Status ValidateClassifierOptions(const ClassifierOptions& options);

struct Classification {
  TrafficClass cls = TrafficClass::kBalanced;
  bool changed = false;  // this call moved the class
  DemandEstimate demand;
};

class Classifier {
 public:
  // `options` must pass ValidateClassifierOptions (checked).
  explicit Classifier(ClassifierOptions options = {},
                      TrafficClass initial = TrafficClass::kBalanced);

  // Classifies from smoothed signals; `current` is what the actuator reports, `now_s` the
  // reading's time (same clock as Signals::time_s).
  Classification Classify(const Signals& smoothed, const InstanceCounts& current, double now_s);

  TrafficClass current() const { return class_; }

 private:
  TrafficClass Candidate(double score) const;

  ClassifierOptions options_;
  TrafficClass class_;
  std::optional<double> last_change_s_;
};

}  // namespace tandem::controller
