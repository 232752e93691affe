// The goodput search on synthetic attainment(rate) functions.
#include "bench/goodput_search.h"

#include <cmath>

#include "gtest/gtest.h"

namespace tandem::bench {
namespace {

// Attainment falls from 0.97 to 0.5 past `knee` req/s.
AttainmentProbe Knee(double knee, int* calls = nullptr) {
  return [knee, calls](double rate, int) -> absl::StatusOr<double> {
    if (calls) ++*calls;
    return rate <= knee ? 0.97 : 0.5;
  };
}

TEST(GoodputSearch, FindsTheKneeWithinTheResolution) {
  GoodputSearchOptions o;
  o.rate_min = 0.25;
  o.rate_max = 16;
  o.iterations = 8;
  for (double knee : {0.3, 1.0, 5.3, 12.7, 15.9}) {
    int calls = 0;
    auto r = FindMaxRate(o, Knee(knee, &calls));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->max_rate.has_value()) << knee;
    const double resolution = (o.rate_max - o.rate_min) / std::pow(2.0, o.iterations);
    EXPECT_LE(*r->max_rate, knee) << knee;
    EXPECT_GE(*r->max_rate, knee - resolution) << knee;
    EXPECT_FALSE(r->hit_rate_max);
    EXPECT_EQ(calls, 2 + o.iterations);
    EXPECT_EQ(r->probes.size(), static_cast<size_t>(2 + o.iterations));
    EXPECT_EQ(r->probes[0].rate, o.rate_max);  // max first, then min, then bisection
    EXPECT_EQ(r->probes[1].rate, o.rate_min);
  }
}

TEST(GoodputSearch, SaysWhenTheRangeIsTooSmallOrTooLarge) {
  GoodputSearchOptions o;
  o.rate_min = 1;
  o.rate_max = 4;
  auto all_pass = FindMaxRate(o, Knee(100));
  ASSERT_TRUE(all_pass.ok());
  EXPECT_EQ(all_pass->max_rate, 4);
  EXPECT_TRUE(all_pass->hit_rate_max);
  EXPECT_EQ(all_pass->probes.size(), 1u);

  auto none_pass = FindMaxRate(o, Knee(0.5));
  ASSERT_TRUE(none_pass.ok());
  EXPECT_FALSE(none_pass->max_rate.has_value());
  EXPECT_EQ(none_pass->probes.size(), 2u);
}

TEST(GoodputSearch, AveragesTheRepeats) {
  // Up to 4 req/s runs attain (1.0, 0.85): mean 0.925 passes. Up to 6 they attain
  // (0.95, 0.80): the first run alone passes, the mean 0.875 does not.
  auto probe = [](double rate, int repeat) -> absl::StatusOr<double> {
    if (rate <= 4) return repeat == 0 ? 1.0 : 0.85;
    if (rate <= 6) return repeat == 0 ? 0.95 : 0.80;
    return 0.1;
  };
  GoodputSearchOptions o;
  o.rate_min = 1;
  o.rate_max = 9;
  o.iterations = 10;
  o.repeats = 2;
  auto averaged = FindMaxRate(o, probe);
  ASSERT_TRUE(averaged.ok());
  EXPECT_NEAR(*averaged->max_rate, 4, 0.01);
  for (const GoodputProbe& p : averaged->probes) {
    ASSERT_EQ(p.attainments.size(), 2u);
    EXPECT_DOUBLE_EQ(p.mean_attainment, (p.attainments[0] + p.attainments[1]) / 2);
  }
  o.repeats = 1;
  auto single = FindMaxRate(o, probe);
  ASSERT_TRUE(single.ok());
  EXPECT_NEAR(*single->max_rate, 6, 0.01);
}

TEST(GoodputSearch, ReportsEveryProbeAndStopsOnErrors) {
  GoodputSearchOptions o;
  o.iterations = 3;
  int reported = 0;
  auto r = FindMaxRate(o, Knee(3), [&](const GoodputProbe& p) {
    ++reported;
    EXPECT_EQ(p.passed, p.mean_attainment >= o.attainment);
  });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(reported, 5);

  int calls = 0;
  auto failing = FindMaxRate(o, [&](double, int) -> absl::StatusOr<double> {
    if (++calls == 2) return absl::UnavailableError("server went away");
    return 0.1;
  });
  EXPECT_EQ(failing.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(calls, 2);
}

TEST(GoodputSearch, RejectsBadOptions) {
  auto bad = [](auto mutate) {
    GoodputSearchOptions o;
    mutate(o);
    return !ValidateGoodputSearch(o).ok();
  };
  EXPECT_FALSE(bad([](GoodputSearchOptions&) {}));
  EXPECT_TRUE(bad([](GoodputSearchOptions& o) { o.attainment = 0; }));
  EXPECT_TRUE(bad([](GoodputSearchOptions& o) { o.attainment = 1.5; }));
  EXPECT_TRUE(bad([](GoodputSearchOptions& o) { o.rate_min = 0; }));
  EXPECT_TRUE(bad([](GoodputSearchOptions& o) { o.rate_max = o.rate_min; }));
  EXPECT_TRUE(bad([](GoodputSearchOptions& o) { o.rate_max = INFINITY; }));
  EXPECT_TRUE(bad([](GoodputSearchOptions& o) { o.iterations = -1; }));
  EXPECT_TRUE(bad([](GoodputSearchOptions& o) { o.repeats = 0; }));
}

}  // namespace
}  // namespace tandem::bench
