#include "controller/core/smoother.h"

#include <cmath>
#include <set>
#include <string>

#include "gtest/gtest.h"

namespace tandem::controller {
namespace {

Signals Reading(double t, double arrival_rate) {
  Signals s;
  s.time_s = t;
  s.window_s = 5;
  s.arrival_rate = arrival_rate;
  return s;
}

TEST(SignalSmootherTest, FirstRealValueInitialises) {
  SignalSmoother smoother({.half_life_s = 20});
  EXPECT_FALSE(smoother.has_reading());
  const Signals& out = smoother.Update(Reading(100, 4));
  EXPECT_TRUE(smoother.has_reading());
  EXPECT_DOUBLE_EQ(out.arrival_rate, 4);
  EXPECT_FALSE(HasData(out.ttft_p99));  // never seen: still no data
}

TEST(SignalSmootherTest, OneHalfLifeTakesHalfOfAStep) {
  SignalSmoother smoother({.half_life_s = 20});
  smoother.Update(Reading(0, 10));
  EXPECT_DOUBLE_EQ(smoother.Update(Reading(20, 20)).arrival_rate, 15);
  // Two more half-lives of the same value: 3/4 of the remaining gap.
  EXPECT_NEAR(smoother.Update(Reading(60, 20)).arrival_rate, 15 + 0.75 * 5, 1e-9);
}

TEST(SignalSmootherTest, AlphaFollowsTheGapBetweenReadings) {
  // Four 5 s steps equal one 20 s step: the smoothing depends on time, not on tick count.
  SignalSmoother fine({.half_life_s = 20});
  SignalSmoother coarse({.half_life_s = 20});
  fine.Update(Reading(0, 0));
  coarse.Update(Reading(0, 0));
  for (double t : {5.0, 10.0, 15.0, 20.0}) fine.Update(Reading(t, 8));
  coarse.Update(Reading(20, 8));
  EXPECT_NEAR(fine.smoothed().arrival_rate, 4, 1e-9);
  EXPECT_NEAR(coarse.smoothed().arrival_rate, 4, 1e-9);
}

TEST(SignalSmootherTest, NaNLeavesTheValueAndTheNextRealValueWeighsTheWholeGap) {
  SignalSmoother smoother({.half_life_s = 20});
  smoother.Update(Reading(0, 10));
  EXPECT_DOUBLE_EQ(smoother.Update(Reading(20, kNoData)).arrival_rate, 10);
  EXPECT_FALSE(HasData(smoother.latest().arrival_rate));  // the raw reading is kept as read
  // 40 s since the last real value: alpha = 3/4.
  EXPECT_NEAR(smoother.Update(Reading(40, 30)).arrival_rate, 10 + 0.75 * 20, 1e-9);
}

TEST(SignalSmootherTest, LongGapConvergesToTheNewValue) {
  SignalSmoother smoother({.half_life_s = 10});
  smoother.Update(Reading(0, 1000));
  EXPECT_DOUBLE_EQ(smoother.Update(Reading(80, 3)).arrival_rate, 3);
}

TEST(SignalSmootherTest, StaleFieldTurnsBackIntoNoData) {
  SignalSmoother smoother({.half_life_s = 20, .stale_after_s = 60});
  Signals s = Reading(0, 1);
  s.ttft_p99 = 9;  // measured, then the traffic stops
  smoother.Update(s);
  s.ttft_p99 = kNoData;
  s.time_s = 30;
  EXPECT_DOUBLE_EQ(smoother.Update(s).ttft_p99, 9);
  s.time_s = 60;
  EXPECT_FALSE(HasData(smoother.Update(s).ttft_p99));
  EXPECT_DOUBLE_EQ(smoother.smoothed().arrival_rate, 1);  // refreshed fields stay
  s.time_s = 65;
  s.ttft_p99 = 0.5;
  EXPECT_DOUBLE_EQ(smoother.Update(s).ttft_p99, 0.5);  // re-initialised, not averaged with 9
}

TEST(SignalSmootherTest, CountsAndTimesComeFromTheLatestReading) {
  SignalSmoother smoother({.half_life_s = 20});
  Signals a = Reading(0, 1);
  a.ready = {1, 1};
  smoother.Update(a);
  Signals b = Reading(5, 1);
  b.window_s = 7;
  b.ready = {3, 2};
  const Signals& out = smoother.Update(b);
  EXPECT_EQ(out.ready, (InstanceCounts{3, 2}));
  EXPECT_DOUBLE_EQ(out.time_s, 5);
  EXPECT_DOUBLE_EQ(out.window_s, 7);
  EXPECT_DOUBLE_EQ(smoother.latest().window_s, 7);
}

TEST(SignalSmootherTest, ClockGoingBackwardsRestarts) {
  SignalSmoother smoother({.half_life_s = 20});
  smoother.Update(Reading(1000, 50));
  EXPECT_DOUBLE_EQ(smoother.Update(Reading(3, 2)).arrival_rate, 2);
}

TEST(SignalSmootherTest, ZeroHalfLifeDisablesSmoothing) {
  SignalSmoother smoother({.half_life_s = 0});
  smoother.Update(Reading(0, 50));
  EXPECT_DOUBLE_EQ(smoother.Update(Reading(1, 2)).arrival_rate, 2);
}

TEST(SignalSmootherTest, EveryMeasurementFieldIsSmoothed) {
  const auto fields = SignalMeasurementFields();
  std::set<std::string> names;
  Signals a, b;
  a.time_s = 0;
  b.time_s = 20;
  for (size_t i = 0; i < fields.size(); ++i) {
    names.insert(fields[i].name);
    a.*fields[i].member = static_cast<double>(i + 1);
    b.*fields[i].member = 3.0 * static_cast<double>(i + 1);
  }
  EXPECT_EQ(names.size(), fields.size());  // names are unique
  EXPECT_EQ(fields.size(), 27u);
  SignalSmoother smoother({.half_life_s = 20});
  smoother.Update(a);
  const Signals& out = smoother.Update(b);
  for (size_t i = 0; i < fields.size(); ++i) {
    EXPECT_DOUBLE_EQ(out.*fields[i].member, 2.0 * static_cast<double>(i + 1)) << fields[i].name;
  }
}

}  // namespace
}  // namespace tandem::controller
