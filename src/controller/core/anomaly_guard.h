// AnomalyGuard: keeps readings that should not move the prefill:decode ratio away from the
// planner. It sits between the signal source and the smoother, and judges each raw reading:
//
//   spike   — the arrival rate or a latency quantile an SLO correction judges (p90/p99 TTFT and
//             TPOT, p99 ITL) far from its recent level. The detector is the median and
//             the median absolute deviation (MAD) of that field's last `window` accepted values:
//             a value v is an outlier when |v − median| exceeds all of
//               threshold × 1.4826 × MAD            (robust z-score; 1.4826 × MAD estimates σ),
//               min_relative_change × |median|      (a flat field, MAD 0, is not upset by a wobble),
//               threshold × √max(median × window_s, 1) ÷ window_s   for arrival_rate only (Poisson
//                                                   counting noise: few requests per window are
//                                                   noisy by nature, and a first request after
//                                                   an idle stretch is not a spike by itself).
//             Latency fields are judged on a log scale (their noise is multiplicative: a p99 from
//             a few requests is heavy-tailed), so there the relative floor is a factor,
//             min_latency_factor. Median and MAD, not mean and standard deviation: the spike
//             being judged must not widen its own yardstick. An outlier is
//             dropped from the reading (NaN: the smoother keeps the value it had, so the plan is
//             the one the reading before would have made); an arrival-rate spike drops the
//             prompt token rate with it. `confirm_readings` outliers in a row on the same side
//             are a new level, not a spike: they become the field's history and pass (and the
//             field is judged again once its history is min_history long).
//   gap     — the reading comes more than max_gap_factor × interval after the previous one
//             (the source failed for a while, a scrape was lost): its rates average over the
//             gap. It seeds the history and the smoother, and the tick holds.
//   worker_lost — a role has fewer ready instances than at the previous reading, and fewer
//             than the actuator asks for (so not a scale-in or a role change): a worker died. Its requests fail over and their
//             latency spikes; for settle_s the latency fields are dropped from readings (the
//             load fields still count), so the spike cannot ask for instances.
//   stale   — no request arrived in the window and none is in flight: the latency percentiles
//             the smoother still holds describe traffic that has stopped. The planning view
//             drops them, so an idle cluster scales down by its idle rule and never rebalances
//             on old percentiles (PlanningView).
//
// Not thread-safe: the control loop owns one and calls it once per tick.
#pragma once

#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "controller/core/signals.h"

namespace tandem::controller {

inline constexpr std::string_view kAnomalySpike = "spike";
inline constexpr std::string_view kAnomalyGap = "gap";
inline constexpr std::string_view kAnomalyWorkerLost = "worker_lost";
// The reason of a hold the guard decided (the control loop's, not the planner's).
inline constexpr std::string_view kReasonAnomaly = "anomaly";

// Every anomaly kind (to pre-create metric series).
std::span<const std::string_view> AllAnomalyKinds();

struct AnomalyGuardOptions {
  double interval_s = 5;            // the control loop's interval (what a gap is measured in)
  int window = 20;                  // accepted values per field the median and MAD come from
  int min_history = 8;              // a field is judged only with this many values behind it
  double threshold = 5;             // robust z-score above which a value is an outlier
  double min_relative_change = 0.5; // ... and it must differ from the median by this share
  double min_latency_factor = 3;    // ... (latency: be this many times above or below it; a
                                    // histogram quantile jumps by a bucket, about 2x, on its own)
  int confirm_readings = 3;         // outliers in a row on one side that make a new level
  double max_gap_factor = 3;        // a reading later than this × interval follows a gap
  double settle_s = 30;             // latency ignored this long after a worker was lost
};

absl::Status ValidateAnomalyGuardOptions(const AnomalyGuardOptions& options);

struct GuardVerdict {
  Signals reading;          // what the smoother should take: outliers and unsettled latency NaN
  bool hold = false;        // plan nothing this tick (after a gap)
  std::vector<std::string> kinds;  // kAnomaly* found in this reading (hold or not)
  std::string detail;       // for people: what was seen and what was done about it
};

class AnomalyGuard {
 public:
  // `options` must pass ValidateAnomalyGuardOptions (checked).
  explicit AnomalyGuard(AnomalyGuardOptions options = {});

  // Judges one raw reading; `current` is what the actuator reports now (what was asked for).
  GuardVerdict Judge(const Signals& raw, const InstanceCounts& current);

  // The smoothed signals the planner should see after `raw`: without latency fields when the
  // window had no traffic at all (nothing arrived, nothing in flight).
  static Signals PlanningView(const Signals& smoothed, const Signals& raw);

  // The fields the spike detector judges, and the latency fields worker_lost and stale drop.
  static std::span<const SignalField> JudgedFields();
  static std::span<const SignalField> LatencyFields();

  const AnomalyGuardOptions& options() const { return options_; }

 private:
  struct FieldState {
    std::deque<double> history;  // accepted values (latency: their logs), newest last
    std::vector<double> pending; // outliers in a row, on one side
    int side = 0;                // +1 above, −1 below the median
  };
  // Returns true when `v` is to be dropped (an unconfirmed outlier); `why` says what was seen.
  bool JudgeField(FieldState& st, const SignalField& field, double v, double window_s,
                  std::string& why);
  void Accept(FieldState& st, double v);

  AnomalyGuardOptions options_;
  std::vector<FieldState> fields_;
  std::optional<double> last_time_s_;
  std::optional<InstanceCounts> last_ready_;
  std::optional<double> settle_until_s_;
};

}  // namespace tandem::controller
