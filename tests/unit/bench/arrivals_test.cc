#include "bench/arrivals.h"

#include <cmath>
#include <limits>
#include <numeric>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::bench {
namespace {

using ::testing::HasSubstr;

struct GapStats {
  double mean = 0;
  double cv2 = 0;  // variance / mean^2
};

GapStats Gaps(const std::vector<double>& times) {
  std::vector<double> gaps;
  for (size_t i = 1; i < times.size(); ++i) gaps.push_back(times[i] - times[i - 1]);
  GapStats s;
  s.mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / gaps.size();
  double var = 0;
  for (double g : gaps) var += (g - s.mean) * (g - s.mean);
  var /= gaps.size() - 1;
  s.cv2 = var / (s.mean * s.mean);
  return s;
}

// 50,000 seeded gaps: the standard error of the mean is < 0.5% (Poisson) and of CV^2 a few
// percent, so the tolerances below are many standard errors wide.
TEST(GammaArrivals, PoissonRecoversRateAndUnitCv) {
  Rng rng(7);
  const auto times = GammaArrivals({10.0, 1.0}, 50'001, rng);
  const GapStats s = Gaps(times);
  EXPECT_NEAR(s.mean, 0.1, 0.1 * 0.03);
  EXPECT_NEAR(s.cv2, 1.0, 0.10);
}

TEST(GammaArrivals, BurstinessSetsTheCoefficientOfVariation) {
  for (double b : {0.25, 0.5, 2.0, 4.0}) {
    Rng rng(11);
    const auto times = GammaArrivals({4.0, b}, 50'001, rng);
    const GapStats s = Gaps(times);
    EXPECT_NEAR(s.mean, 0.25, 0.25 * 0.05) << "burstiness " << b;
    EXPECT_NEAR(s.cv2, 1.0 / b, (1.0 / b) * 0.15) << "burstiness " << b;
  }
}

TEST(GammaArrivals, StartAtZeroAndNeverGoBack) {
  Rng rng(3);
  const auto times = GammaArrivals({2.0, 0.5}, 1000, rng);
  ASSERT_EQ(times.size(), 1000u);
  EXPECT_EQ(times.front(), 0.0);
  for (size_t i = 1; i < times.size(); ++i) EXPECT_GE(times[i], times[i - 1]);
}

TEST(GammaArrivals, SameSeedSameTimes) {
  Rng a(42), b(42);
  EXPECT_EQ(GammaArrivals({3.0, 1.0}, 100, a), GammaArrivals({3.0, 1.0}, 100, b));
}

TEST(GammaArrivals, InfiniteRateSendsEverythingAtOnce) {
  Rng rng(1);
  const auto times = GammaArrivals({std::numeric_limits<double>::infinity(), 1.0}, 50, rng);
  ASSERT_EQ(times.size(), 50u);
  for (double t : times) EXPECT_EQ(t, 0.0);
}

TEST(ArrivalProcess, RejectsBadRateAndBurstiness) {
  EXPECT_TRUE(ValidateArrivalProcess({1.0, 1.0}).ok());
  EXPECT_TRUE(ValidateArrivalProcess({std::numeric_limits<double>::infinity(), 1.0}).ok());
  EXPECT_FALSE(ValidateArrivalProcess({0.0, 1.0}).ok());
  EXPECT_FALSE(ValidateArrivalProcess({-1.0, 1.0}).ok());
  EXPECT_FALSE(ValidateArrivalProcess({std::nan(""), 1.0}).ok());
  EXPECT_FALSE(ValidateArrivalProcess({1.0, 0.0}).ok());
  EXPECT_FALSE(ValidateArrivalProcess({1.0, std::numeric_limits<double>::infinity()}).ok());
}

TEST(Schedule, ParsesInlinePhases) {
  auto phases = ParseSchedule("10s@2:chat; 5s@0 ;20@4.5:uniform:in=1-2,out=3-4");
  ASSERT_TRUE(phases.ok()) << phases.status();
  ASSERT_EQ(phases->size(), 3u);
  EXPECT_EQ((*phases)[0].duration_s, 10);
  EXPECT_EQ((*phases)[0].rate, 2);
  EXPECT_EQ((*phases)[0].workload, "chat");
  EXPECT_EQ((*phases)[1].rate, 0);
  EXPECT_EQ((*phases)[1].workload, "");
  EXPECT_EQ((*phases)[2].duration_s, 20);
  EXPECT_EQ((*phases)[2].rate, 4.5);
  EXPECT_EQ((*phases)[2].workload, "uniform:in=1-2,out=3-4");
  EXPECT_EQ(ScheduleDuration(*phases), 35);
}

TEST(Schedule, ParsesAFileWithCommentsAndNamesBadLines) {
  auto phases = ParseSchedule("# ramp\n30s@1:chat\n\n60s@3  # peak\n");
  ASSERT_TRUE(phases.ok()) << phases.status();
  ASSERT_EQ(phases->size(), 2u);
  EXPECT_EQ((*phases)[1].rate, 3);

  auto bad = ParseSchedule("30s@1\n10s@fast\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("line 2"));
  EXPECT_THAT(bad.status().message(), HasSubstr("fast"));

  auto inline_bad = ParseSchedule("30s@1;0s@2");
  ASSERT_FALSE(inline_bad.ok());
  EXPECT_THAT(inline_bad.status().message(), HasSubstr("phase 2"));
  EXPECT_FALSE(ParseSchedule("30s").ok());
  EXPECT_FALSE(ParseSchedule("30s@inf").ok());
  EXPECT_FALSE(ParseSchedule(" ; ").ok());
}

TEST(Schedule, EachPhaseGetsItsRateTimesDuration) {
  const std::vector<SchedulePhase> phases = {{200, 5, ""}, {50, 0, ""}, {100, 20, ""}};
  Rng rng(5);
  const auto arrivals = ScheduleArrivals(phases, 1.0, rng);
  int counts[3] = {0, 0, 0};
  const double starts[3] = {0, 200, 250}, ends[3] = {200, 250, 350};
  for (const auto& a : arrivals) {
    ASSERT_GE(a.phase, 0);
    ASSERT_LT(a.phase, 3);
    ++counts[a.phase];
    EXPECT_GE(a.time_s, starts[a.phase]);
    EXPECT_LT(a.time_s, ends[a.phase]);
  }
  // Poisson counts: 1000 +- 32 and 2000 +- 45 (one standard deviation).
  EXPECT_NEAR(counts[0], 1000, 150);
  EXPECT_EQ(counts[1], 0);
  EXPECT_NEAR(counts[2], 2000, 200);
  for (size_t i = 1; i < arrivals.size(); ++i) EXPECT_GE(arrivals[i].time_s, arrivals[i - 1].time_s);
}

TEST(Schedule, FormatsRates) {
  EXPECT_EQ(FormatRate(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(FormatRate(2.5), "2.5");
}

}  // namespace
}  // namespace tandem::bench
