// SimSizer: the planner's sizing by simulation (`--plan-by simulation`). For a rate and the
// length distributions the controller reads, it simulates candidate clusters with the cost
// model of a profile (`tandem profile`; the simulator `tandem plan` uses, src/sim/) and picks
// the cheapest whose predicted SLO attainment meets the target — the objective `tandem plan`
// reports, asked every decision at the traffic of the moment.
//
// The traffic simulated: Poisson arrivals at the rate for horizon_s (at least min_requests, at
// most max_requests requests), prompt and output lengths drawn from LengthSamplers over the
// signals' quantiles and means. A prompt counts only its uncached part (× 1 − the measured
// prefix-cache share): prefill demand is the tokens that must be computed.
//
// The candidates: every (prefill, decode) with prefill in [min_prefill, max_prefill], decode in
// [max(min_decode, 1), max_decode] and prefill + decode ≤ max_total_instances, tried cheapest
// first (cost = prefill × prefill_cost + decode × decode_cost, then fewer workers, then fewer
// prefill workers); the first to meet the target (by down_margin more when it is cheaper than
// the running counts) wins, unless the running counts cost the same
// and meet it too (then they stay: no move for nothing). When none does, the one with the best
// attainment (the cheapest of equals), unless it beats the running counts by less than
// switch_margin (then they stay: overloaded shapes' shortfalls are noisy). A cluster with no prefill worker is simulated as that many
// mixed workers: decode workers compute prompts themselves when there is no prefill worker.
// A rate of 0 needs no simulation: the cheapest candidate.
//
// Calibration (calibrate, on by default): a profile gives the shape of the costs, the running
// workers give their scale on this machine today (a profile from another day or another host
// of the same VM type can be off by more than its fit's error).
// Each reading, the measured decode iteration mean is compared with the profile's time for
// that batch (decode tokens per busy second × iteration time) at the mean context, and the
// prefill workers' tokens per busy second with the profile's for a chunk of the mean prompt;
// the geometric mean of the ratios (within [¼, 4]) is folded into a running scale (weight
// 0.3, geometric) that multiplies every simulated iteration. Until warmup_readings readings have
// been folded in, Size answers nothing (the planner's capacity model plans meanwhile).
//
// On a CPU budget (plan.cpus > 0) workers share the machine: each runs threads_per_worker
// threads (0: cpus ÷ workers, at least 1), and when the workers' threads together exceed the
// CPUs every iteration is slowed by that ratio (a crude model of oversubscription).
//
// Deterministic for equal inputs (seeded). Not thread-safe: the planner calls it from the
// control loop's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/core/planner.h"
#include "sim/cost_model.h"
#include "sim/plan.h"
#include "sim/simulator.h"

namespace tandem::controller {

// A length distribution known by its mean and 50th, 90th and 99th percentiles: the quantile
// function is piecewise linear through (0, lo), (0.5, p50), (0.9, p90), (0.99, p99), (1, hi)
// with lo = max(1, 2·p50 − p90) (at most p50) and hi = p99 + (p99 − p90), every knot at least
// the one before, then scaled so its mean is the measured mean (by a factor within [¼, 4]):
// histogram buckets are coarse, the mean is exact. Without quantiles, every draw is the mean.
class LengthSampler {
 public:
  // nullopt without a mean > 0.
  static std::optional<LengthSampler> FromMoments(double mean, double p50, double p90, double p99);
  // The length at quantile u in [0, 1], at least 1.
  int At(double u) const;
  double mean() const;  // of the scaled quantile function

 private:
  double Area() const;  // of the unscaled quantile function over [0, 1]

  double knots_[5] = {};
  double scale_ = 1;
};

struct SimSizerOptions {
  sim::Profile profile;
  sim::PlanSettings plan;        // profile is set by the sizer; cpus > 0: a CPU budget
  int threads_per_worker = 0;    // with plan.cpus > 0; 0: cpus ÷ workers
  double attainment = 0.9;       // share of requests within both SLOs the shape must reach
  double prefill_cost = 1;       // what a prefill worker costs (any unit, as decode_cost)
  double decode_cost = 1;
  // When no candidate meets the target, the running counts stay unless the best candidate's
  // attainment is this much higher (the shortfalls of overloaded shapes are noisy).
  double switch_margin = 0.1;
  // A shape cheaper than the running counts must reach attainment + this (at most 1): a
  // scale-down's hysteresis in attainment, as the planner's scale_down_headroom is in rate.
  double down_margin = 0.05;
  double horizon_s = 120;        // seconds of arrivals simulated per candidate
  int min_requests = 60;
  int max_requests = 300;
  uint64_t seed = 1;
  // Scale the profile's iteration costs by what the running workers measure (see SimSizer),
  // and size nothing before that many readings have been folded in (a fresh worker's first
  // iterations are slower than its later ones, and a window of a few requests says little).
  bool calibrate = true;
  int warmup_readings = 6;
};

absl::Status ValidateSimSizerOptions(const SimSizerOptions& options);

class SimSizer : public ShapeSizer {
 public:
  static absl::StatusOr<std::unique_ptr<SimSizer>> Create(SimSizerOptions options);

  std::optional<SizedCounts> Size(const Signals& smoothed, double rate, const PlannerConfig& config,
                                  const InstanceCounts& current) override;
  double attainment_target() const override { return options_.attainment; }

  // The requests simulated for `rate` and the lengths of `smoothed` (empty when the signals
  // have no lengths, or the rate is not > 0).
  std::vector<sim::SimRequest> Requests(const Signals& smoothed, double rate) const;
  // Predicted attainment of `counts` (prefill, decode) on `requests` under `config`'s SLOs.
  absl::StatusOr<double> Attainment(const InstanceCounts& counts, const std::vector<sim::SimRequest>& requests,
                                    const PlannerConfig& config) const;
  // The candidates of `config`, cheapest first.
  std::vector<InstanceCounts> Candidates(const PlannerConfig& config) const;

  // The running workers' iteration times over the profile's predictions for them (NaN
  // without measurements); the geometric mean of the decode and the prefill ratios, in [¼, 4].
  double MeasuredScale(const Signals& smoothed, const InstanceCounts& current) const;
  // The scale the simulations use now (NaN: none measured yet, the profile as it is).
  double scale() const { return scale_; }

 private:
  // How the workers of a shape share the CPUs: threads each and the slowdown of oversubscription.
  struct Sharing {
    int threads = 0;  // 0: one device per worker
    double slowdown = 1;
  };
  explicit SimSizer(SimSizerOptions options);
  double Cost(const InstanceCounts& counts) const;
  Sharing SharingOf(const InstanceCounts& counts) const;
  // Folds this reading's MeasuredScale into scale_ (once per reading time).
  void Calibrate(const Signals& smoothed, const InstanceCounts& current);

  SimSizerOptions options_;
  double scale_ = kNoData;
  double calibrated_at_ = kNoData;
  int calibrations_ = 0;
};

}  // namespace tandem::controller
