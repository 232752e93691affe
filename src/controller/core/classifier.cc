#include "controller/core/classifier.h"

#include <algorithm>

#include "common/check.h"
#include "common/strings.h"

namespace tandem::controller {
namespace {

// load / capacity, in instance-equivalents. Zero load needs nothing even when the capacity is
// unknown; an unmeasured (NaN or non-positive) capacity otherwise leaves the demand unknown.
double InstancesFor(double load, double capacity) {
  if (!HasData(load)) return kNoData;
  if (load <= 0) return 0;
  if (!HasData(capacity) || capacity <= 0) return kNoData;
  return load / capacity;
}

double Ratio(double value, double target) {
  if (!HasData(value) || !(target > 0)) return kNoData;
  return value / target;
}

// max(demand, instances × ratio) for a ratio over 1; the demand (possibly NaN) otherwise.
double WithPressure(double demand, int instances, double ratio) {
  if (!HasData(ratio) || ratio <= 1) return demand;
  const double pressure = std::max(instances, 0) * ratio;
  return HasData(demand) ? std::max(demand, pressure) : demand;
}

}  // namespace

const char* TrafficClassName(TrafficClass c) {
  switch (c) {
    case TrafficClass::kBalanced:
      return "balanced";
    case TrafficClass::kPromptHeavy:
      return "prompt_heavy";
    case TrafficClass::kGenerationHeavy:
      return "generation_heavy";
  }
  return "balanced";
}

std::optional<TrafficClass> ParseTrafficClass(std::string_view name) {
  for (TrafficClass c :
       {TrafficClass::kBalanced, TrafficClass::kPromptHeavy, TrafficClass::kGenerationHeavy}) {
    if (name == TrafficClassName(c)) return c;
  }
  return std::nullopt;
}

DemandEstimate EstimateDemand(const Signals& s, const InstanceCounts& current,
                              const SloTargets& slo) {
  DemandEstimate d;
  d.prefill_load = s.prompt_token_rate;
  if (!HasData(d.prefill_load)) d.prefill_load = s.arrival_rate * s.prompt_tokens_mean;
  // Only the tokens the prefix cache does not hold are work, in the unit of the capacity
  // (tokens computed per busy second).
  if (HasData(s.prompt_cached_fraction)) {
    d.cached_fraction = std::clamp(s.prompt_cached_fraction, 0.0, 1.0);
    d.prefill_load *= 1 - d.cached_fraction;
  }
  if (HasData(s.arrival_rate) && s.arrival_rate <= 0) d.prefill_load = 0;
  d.decode_load = s.arrival_rate * s.output_tokens_mean;
  if (HasData(s.arrival_rate) && s.arrival_rate <= 0) d.decode_load = 0;
  d.prefill_capacity = s.prefill_tokens_per_busy_second;
  d.decode_capacity = s.decode_tokens_per_busy_second;
  d.prefill_demand = InstancesFor(d.prefill_load, d.prefill_capacity);
  d.decode_demand = InstancesFor(d.decode_load, d.decode_capacity);

  d.ttft_ratio = Ratio(s.ttft_p99, slo.ttft_slo_s);
  d.itl_ratio = Ratio(s.itl_p99, slo.itl_slo_s);
  d.kv_ratio = Ratio(s.kv_utilization, slo.kv_target_utilization);
  d.ttft_from_queue = HasData(s.queue_p99) && HasData(s.ttft_p99) && s.ttft_p99 > 0 &&
                      s.queue_p99 >= DemandEstimate::kQueueShareOfTtft * s.ttft_p99;

  d.prefill_pressure = d.prefill_demand;
  d.decode_pressure = d.decode_demand;
  if (d.ttft_from_queue) {
    d.decode_pressure = WithPressure(d.decode_pressure, current.decode, d.ttft_ratio);
  } else {
    d.prefill_pressure = WithPressure(d.prefill_pressure, current.prefill, d.ttft_ratio);
  }
  d.decode_pressure = WithPressure(d.decode_pressure, current.decode, d.itl_ratio);
  d.decode_pressure = WithPressure(d.decode_pressure, current.decode, d.kv_ratio);

  const int instances = std::max(current.prefill, 0) + std::max(current.decode, 0);
  d.instance_prefill_share =
      instances > 0 ? static_cast<double>(std::max(current.prefill, 0)) / instances : 0.5;
  const double total = d.prefill_pressure + d.decode_pressure;  // NaN if either is
  if (HasData(total) && total > 0) {
    d.demand_prefill_share = d.prefill_pressure / total;
    d.score = d.demand_prefill_share - d.instance_prefill_share;
  }
  return d;
}

absl::Status ValidateClassifierOptions(const ClassifierOptions& o) {
  if (!(o.enter_threshold > 0 && o.enter_threshold < 1)) {
    return absl::InvalidArgumentError(
        StrCat("classifier enter threshold must be in (0, 1), got ", o.enter_threshold));
  }
  if (!(o.exit_threshold >= 0 && o.exit_threshold < o.enter_threshold)) {
    return absl::InvalidArgumentError(StrCat("classifier exit threshold must be in [0, enter=",
                                             o.enter_threshold, "), got ", o.exit_threshold));
  }
  if (!(o.min_dwell_s >= 0)) {
    return absl::InvalidArgumentError(
        StrCat("classifier min dwell must be >= 0 s, got ", o.min_dwell_s));
  }
  if (!(o.slo.ttft_slo_s > 0 && o.slo.itl_slo_s > 0 && o.slo.kv_target_utilization > 0)) {
    return absl::InvalidArgumentError("SLO targets must be positive");
  }
  return absl::OkStatus();
}

Classifier::Classifier(ClassifierOptions options, TrafficClass initial)
    : options_(options), class_(initial) {
  const absl::Status st = ValidateClassifierOptions(options_);
  TANDEM_CHECK(st.ok()) << st.ToString();
}

TrafficClass Classifier::Candidate(double score) const {
  const double enter = options_.enter_threshold;
  const double exit = options_.exit_threshold;
  switch (class_) {
    case TrafficClass::kBalanced:
      break;
    case TrafficClass::kPromptHeavy:
      if (score > exit) return TrafficClass::kPromptHeavy;
      break;
    case TrafficClass::kGenerationHeavy:
      if (score < -exit) return TrafficClass::kGenerationHeavy;
      break;
  }
  if (score >= enter) return TrafficClass::kPromptHeavy;
  if (score <= -enter) return TrafficClass::kGenerationHeavy;
  return TrafficClass::kBalanced;
}

Classification Classifier::Classify(const Signals& smoothed, const InstanceCounts& current,
                                    double now_s) {
  Classification out;
  out.demand = EstimateDemand(smoothed, current, options_.slo);
  if (HasData(out.demand.score)) {
    const TrafficClass next = Candidate(out.demand.score);
    const bool dwelt = !last_change_s_ || now_s - *last_change_s_ >= options_.min_dwell_s;
    if (next != class_ && dwelt) {
      class_ = next;
      last_change_s_ = now_s;
      out.changed = true;
    }
  }
  out.cls = class_;
  return out;
}

}  // namespace tandem::controller
