// Forecaster: predicts where a load series (tokens/s) will be a given horizon ahead, so the
// planner can start a worker early enough to be ready when the load arrives.
//
// Three predictors run side by side on every observation:
//   last_value — the series stays where it is (the reactive controller's implicit forecast);
//   holt       — Holt's linear trend (double exponential smoothing) for uneven steps:
//                  level  L ← α·v + (1 − α)·(L + T·dt)
//                  trend  T ← β·(L − L_before)/dt + (1 − β)·T        (units per second)
//                  forecast(h) = max(0, L + T·h)
//   seasonal   — a daily (season_s) profile in season_bins bins, each bin the EWMA
//                (seasonal_weight) of the observations that fell in it:
//                  forecast(h) = max(0, v_now + profile[bin(t + h)] − profile[bin(t)])
//                available once the series has been observed for a whole season and both
//                bins have data.
// Each predictor's forecast for the horizon asked last is kept until its target time; when an
// observation reaches it, the absolute error is folded into that predictor's error (EWMA with
// error_half_life_s). Forecast() answers with the predictor whose error is lowest among those
// with at least min_scored forecasts scored; until then, last_value.
//
// Not thread-safe: the control loop owns one per series.
#pragma once

#include <array>
#include <deque>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace tandem::controller {

enum class Predictor { kLastValue = 0, kHolt = 1, kSeasonal = 2 };
inline constexpr int kNumPredictors = 3;
const char* PredictorName(Predictor p);
std::span<const Predictor> AllPredictors();

struct ForecastOptions {
  double holt_alpha = 0.3;
  double holt_beta = 0.1;
  double season_s = 86400;
  int season_bins = 288;  // 5-minute bins over a day
  double seasonal_weight = 0.3;
  double error_half_life_s = 300;
  int min_scored = 5;
};

absl::Status ValidateForecastOptions(const ForecastOptions& options);

struct Forecast {
  double value = 0;        // the series at now + horizon
  double horizon_s = 0;
  Predictor predictor = Predictor::kLastValue;
};

class SeriesForecaster {
 public:
  // `options` must pass ValidateForecastOptions (checked).
  explicit SeriesForecaster(ForecastOptions options = {});

  // One observation at time t (seconds, increasing); a NaN is skipped. A time earlier than the
  // previous one starts over (a restarted clock).
  void Observe(double t, double v);
  // The chosen predictor's value `horizon_s` after the last observation; nullopt before any.
  // Remembers every predictor's answer to score it when the target time is observed.
  std::optional<Forecast> Ahead(double horizon_s);

  // A predictor's answer (nullopt where it cannot answer yet), and its error so far (NaN before
  // it has been scored).
  std::optional<double> PredictWith(Predictor p, double horizon_s) const;
  double Error(Predictor p) const { return error_[static_cast<int>(p)]; }
  int Scored(Predictor p) const { return scored_[static_cast<int>(p)]; }

 private:
  struct Pending {
    double target_t;
    std::array<std::optional<double>, kNumPredictors> values;
  };
  int Bin(double t) const;
  void Score(double t, double v);

  ForecastOptions options_;
  std::optional<double> first_t_, last_t_;
  double last_v_ = 0;
  double level_ = 0, trend_ = 0;
  std::vector<std::optional<double>> profile_;
  std::deque<Pending> pending_;
  std::array<double, kNumPredictors> error_;
  std::array<int, kNumPredictors> scored_{};
  std::array<double, kNumPredictors> error_time_{};
};

}  // namespace tandem::controller
