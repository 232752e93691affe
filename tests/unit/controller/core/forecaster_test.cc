#include "controller/core/forecaster.h"

#include <cmath>
#include <numbers>
#include <random>

#include "gtest/gtest.h"

namespace tandem::controller {
namespace {

// Feeds v(t) every `step` seconds over [t0, t1), asking for the `horizon` forecast each time
// (as the control loop does, so the predictors get scored).
template <typename F>
void Feed(SeriesForecaster& f, F v, double t0, double t1, double step, double horizon) {
  for (double t = t0; t < t1; t += step) {
    f.Observe(t, v(t));
    f.Ahead(horizon);
  }
}

TEST(ForecasterTest, NothingObservedNothingForecast) {
  SeriesForecaster f;
  EXPECT_FALSE(f.Ahead(30).has_value());
  f.Observe(0, std::nan(""));
  EXPECT_FALSE(f.Ahead(30).has_value());
}

TEST(ForecasterTest, UntilPredictorsAreScoredTheForecastIsTheLastValue) {
  SeriesForecaster f;
  f.Observe(0, 100);
  f.Observe(5, 110);
  const auto fc = f.Ahead(30);
  ASSERT_TRUE(fc.has_value());
  EXPECT_EQ(fc->predictor, Predictor::kLastValue);
  EXPECT_DOUBLE_EQ(fc->value, 110);
}

TEST(ForecasterTest, ARampIsForecastByItsTrend) {
  // 100 tokens/s rising by 2 per second: 60 s ahead it will be 120 higher.
  SeriesForecaster f;
  auto ramp = [](double t) { return 100 + 2 * t; };
  Feed(f, ramp, 0, 600, 5, 60);
  const auto fc = f.Ahead(60);
  ASSERT_TRUE(fc.has_value());
  EXPECT_EQ(fc->predictor, Predictor::kHolt);
  EXPECT_NEAR(fc->value, ramp(595 + 60), 0.02 * ramp(655));
  EXPECT_LT(f.Error(Predictor::kHolt), f.Error(Predictor::kLastValue) / 2);
}

TEST(ForecasterTest, AFlatNoisySeriesIsForecastNearItsLevel) {
  SeriesForecaster f;
  std::mt19937 rng(3);
  std::normal_distribution<double> noise(0, 20);
  Feed(f, [&](double) { return 500 + noise(rng); }, 0, 3000, 5, 60);
  const auto fc = f.Ahead(60);
  ASSERT_TRUE(fc.has_value());
  EXPECT_NEAR(fc->value, 500, 60);
  // Holt smooths the noise that last_value repeats.
  EXPECT_EQ(fc->predictor, Predictor::kHolt);
}

TEST(ForecasterTest, ADailyPatternIsForecastByTheSeasonalPredictorOnceASeasonIsSeen) {
  // A "day" of 600 s in 60 bins: load 200 ± 150 along a sine. Asking 60 s ahead (a tenth of a
  // period) when the load turns is where trends mislead and the profile knows.
  ForecastOptions o;
  o.season_s = 600;
  o.season_bins = 60;
  SeriesForecaster f(o);
  auto daily = [](double t) { return 200 + 150 * std::sin(2 * std::numbers::pi * t / 600); };
  Feed(f, daily, 0, 550, 5, 60);
  EXPECT_FALSE(f.PredictWith(Predictor::kSeasonal, 60).has_value()) << "not before a whole season";
  Feed(f, daily, 550, 3000, 5, 60);
  const auto fc = f.Ahead(60);
  ASSERT_TRUE(fc.has_value());
  EXPECT_EQ(fc->predictor, Predictor::kSeasonal);
  EXPECT_NEAR(fc->value, daily(2995 + 60), 15);
  EXPECT_LT(f.Error(Predictor::kSeasonal), f.Error(Predictor::kHolt));
  EXPECT_LT(f.Error(Predictor::kSeasonal), f.Error(Predictor::kLastValue));
}

TEST(ForecasterTest, ForecastsAreNeverNegative) {
  SeriesForecaster f;
  Feed(f, [](double t) { return std::max(0.0, 500 - 5 * t); }, 0, 90, 5, 60);
  EXPECT_GE(f.PredictWith(Predictor::kHolt, 600).value(), 0);
}

TEST(ForecasterTest, AClockThatWentBackStartsOver) {
  SeriesForecaster f;
  Feed(f, [](double t) { return 100 + 2 * t; }, 0, 600, 5, 60);
  f.Observe(10, 7);
  const auto fc = f.Ahead(60);
  ASSERT_TRUE(fc.has_value());
  EXPECT_EQ(fc->predictor, Predictor::kLastValue);
  EXPECT_DOUBLE_EQ(fc->value, 7);
  EXPECT_EQ(f.Scored(Predictor::kHolt), 0);
}

TEST(ForecasterTest, RejectsWeightsOutsideTheUnitInterval) {
  EXPECT_FALSE(ValidateForecastOptions({.holt_alpha = 0}).ok());
  EXPECT_FALSE(ValidateForecastOptions({.holt_beta = 1.5}).ok());
  EXPECT_FALSE(ValidateForecastOptions({.season_bins = 0}).ok());
  EXPECT_TRUE(ValidateForecastOptions({}).ok());
}

}  // namespace
}  // namespace tandem::controller
