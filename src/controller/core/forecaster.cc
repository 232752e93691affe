#include "controller/core/forecaster.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/check.h"
#include "common/strings.h"
#include "controller/core/ewma.h"

namespace tandem::controller {
namespace {

constexpr Predictor kPredictors[] = {Predictor::kLastValue, Predictor::kHolt, Predictor::kSeasonal};
constexpr size_t kMaxPending = 4096;

}  // namespace

const char* PredictorName(Predictor p) {
  switch (p) {
    case Predictor::kLastValue:
      return "last_value";
    case Predictor::kHolt:
      return "holt";
    case Predictor::kSeasonal:
      return "seasonal";
  }
  return "last_value";
}

std::span<const Predictor> AllPredictors() { return kPredictors; }

absl::Status ValidateForecastOptions(const ForecastOptions& o) {
  auto in01 = [](double x) { return x > 0 && x <= 1; };
  if (!in01(o.holt_alpha) || !in01(o.holt_beta) || !in01(o.seasonal_weight)) {
    return absl::InvalidArgumentError("forecast smoothing weights must be in (0, 1]");
  }
  if (!(o.season_s > 0) || o.season_bins < 1) {
    return absl::InvalidArgumentError("forecast season must be > 0 s with >= 1 bin");
  }
  if (!(o.error_half_life_s > 0) || o.min_scored < 1) {
    return absl::InvalidArgumentError("forecast error half-life must be > 0 s and min_scored >= 1");
  }
  return absl::OkStatus();
}

SeriesForecaster::SeriesForecaster(ForecastOptions options)
    : options_(options), profile_(static_cast<size_t>(std::max(options.season_bins, 1))) {
  const absl::Status st = ValidateForecastOptions(options_);
  TANDEM_CHECK(st.ok()) << st.ToString();
  error_.fill(std::numeric_limits<double>::quiet_NaN());
}

int SeriesForecaster::Bin(double t) const {
  const double phase = std::fmod(std::max(t, 0.0), options_.season_s) / options_.season_s;
  return std::clamp(static_cast<int>(phase * options_.season_bins), 0, options_.season_bins - 1);
}

void SeriesForecaster::Score(double t, double v) {
  while (!pending_.empty() && pending_.front().target_t <= t) {
    const Pending p = pending_.front();
    pending_.pop_front();
    for (int i = 0; i < kNumPredictors; ++i) {
      if (!p.values[i]) continue;
      const double err = std::abs(*p.values[i] - v);
      if (scored_[i] == 0) {
        error_[i] = err;
      } else {
        const double dt = std::max(t - error_time_[i], 0.0);
        error_[i] += EwmaWeight(dt, options_.error_half_life_s) * (err - error_[i]);
      }
      error_time_[i] = t;
      ++scored_[i];
    }
  }
}

void SeriesForecaster::Observe(double t, double v) {
  if (std::isnan(v) || std::isnan(t)) return;
  if (last_t_ && t < *last_t_) *this = SeriesForecaster(options_);
  if (last_t_ && t == *last_t_) return;
  Score(t, v);
  if (!last_t_) {
    first_t_ = t;
    level_ = v;
    trend_ = 0;
  } else {
    const double dt = t - *last_t_;
    const double before = level_;
    level_ = options_.holt_alpha * v + (1 - options_.holt_alpha) * (level_ + trend_ * dt);
    trend_ = options_.holt_beta * (level_ - before) / dt + (1 - options_.holt_beta) * trend_;
  }
  std::optional<double>& bin = profile_[static_cast<size_t>(Bin(t))];
  bin = bin ? *bin + options_.seasonal_weight * (v - *bin) : v;
  last_t_ = t;
  last_v_ = v;
}

std::optional<double> SeriesForecaster::PredictWith(Predictor p, double horizon_s) const {
  if (!last_t_) return std::nullopt;
  switch (p) {
    case Predictor::kLastValue:
      return last_v_;
    case Predictor::kHolt:
      return std::max(0.0, level_ + trend_ * horizon_s);
    case Predictor::kSeasonal: {
      if (*last_t_ - *first_t_ < options_.season_s) return std::nullopt;
      const auto& now = profile_[static_cast<size_t>(Bin(*last_t_))];
      const auto& then = profile_[static_cast<size_t>(Bin(*last_t_ + horizon_s))];
      if (!now || !then) return std::nullopt;
      return std::max(0.0, last_v_ + *then - *now);
    }
  }
  return std::nullopt;
}

std::optional<Forecast> SeriesForecaster::Ahead(double horizon_s) {
  if (!last_t_) return std::nullopt;
  horizon_s = std::max(horizon_s, 0.0);
  Pending pending{*last_t_ + horizon_s, {}};
  Forecast best{last_v_, horizon_s, Predictor::kLastValue};
  double best_error = std::numeric_limits<double>::infinity();
  for (Predictor p : kPredictors) {
    const int i = static_cast<int>(p);
    pending.values[i] = PredictWith(p, horizon_s);
    if (!pending.values[i] || scored_[i] < options_.min_scored) continue;
    if (error_[i] < best_error) {  // ties keep the earlier (simpler) predictor
      best_error = error_[i];
      best = {*pending.values[i], horizon_s, p};
    }
  }
  if (horizon_s > 0 && (pending_.empty() || pending_.back().target_t < pending.target_t)) {
    pending_.push_back(pending);
    if (pending_.size() > kMaxPending) pending_.pop_front();
  }
  return best;
}

}  // namespace tandem::controller
