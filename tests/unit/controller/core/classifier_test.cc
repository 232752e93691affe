#include "controller/core/classifier.h"

#include <cmath>

#include "gtest/gtest.h"

namespace tandem::controller {
namespace {

// Signals whose prefill and decode demands are `prefill` and `decode` instance-equivalents
// (capacities of 1 token per busy second).
Signals WithDemands(double prefill, double decode) {
  Signals s;
  s.arrival_rate = 1;
  s.prompt_token_rate = prefill;
  s.output_tokens_mean = decode;
  s.prefill_tokens_per_busy_second = 1;
  s.decode_tokens_per_busy_second = 1;
  return s;
}

// With 1P1D (instance share 1/2), demands summing to 1 with prefill share 1/2 + score.
Signals WithScore(double score) { return WithDemands(0.5 + score, 0.5 - score); }

constexpr InstanceCounts k1P1D{1, 1};

TEST(TrafficClassTest, NamesRoundTrip) {
  for (TrafficClass c :
       {TrafficClass::kBalanced, TrafficClass::kPromptHeavy, TrafficClass::kGenerationHeavy}) {
    EXPECT_EQ(ParseTrafficClass(TrafficClassName(c)), c);
  }
  EXPECT_STREQ(TrafficClassName(TrafficClass::kPromptHeavy), "prompt_heavy");
  EXPECT_STREQ(TrafficClassName(TrafficClass::kGenerationHeavy), "generation_heavy");
  EXPECT_FALSE(ParseTrafficClass("mixed").has_value());
}

TEST(EstimateDemandTest, DemandsAreLoadOverMeasuredCapacity) {
  Signals s;
  s.arrival_rate = 0.5;
  s.prompt_token_rate = 500;
  s.output_tokens_mean = 10;
  s.prefill_tokens_per_busy_second = 350;
  s.decode_tokens_per_busy_second = 150;
  const DemandEstimate d = EstimateDemand(s, k1P1D, SloTargets{});
  EXPECT_DOUBLE_EQ(d.prefill_load, 500);
  EXPECT_DOUBLE_EQ(d.decode_load, 5);
  EXPECT_DOUBLE_EQ(d.prefill_demand, 500.0 / 350);
  EXPECT_DOUBLE_EQ(d.decode_demand, 5.0 / 150);
  EXPECT_DOUBLE_EQ(d.instance_prefill_share, 0.5);
  EXPECT_NEAR(d.score, (500.0 / 350) / (500.0 / 350 + 5.0 / 150) - 0.5, 1e-12);
}

TEST(EstimateDemandTest, PromptRateFallsBackToArrivalsTimesMeanPromptLength) {
  Signals s = WithDemands(kNoData, 1);
  s.arrival_rate = 2;
  s.prompt_tokens_mean = 300;
  s.prefill_tokens_per_busy_second = 100;
  EXPECT_DOUBLE_EQ(EstimateDemand(s, k1P1D, SloTargets{}).prefill_demand, 6);
}

TEST(EstimateDemandTest, PromptTokensServedFromThePrefixCacheAreNotPrefillLoad) {
  Signals s;
  s.arrival_rate = 8;
  s.prompt_token_rate = 4000;
  s.output_tokens_mean = 2;
  s.prefill_tokens_per_busy_second = 200;  // counts computed tokens only
  s.decode_tokens_per_busy_second = 100;
  const DemandEstimate uncached = EstimateDemand(s, k1P1D, SloTargets{});
  EXPECT_DOUBLE_EQ(uncached.prefill_demand, 20);
  EXPECT_TRUE(std::isnan(uncached.cached_fraction));

  s.prompt_cached_fraction = 0.95;
  const DemandEstimate cached = EstimateDemand(s, k1P1D, SloTargets{});
  EXPECT_DOUBLE_EQ(cached.cached_fraction, 0.95);
  EXPECT_NEAR(cached.prefill_load, 200, 1e-9);
  EXPECT_NEAR(cached.prefill_demand, 1, 1e-9);
  EXPECT_LT(cached.score, uncached.score);

  s.prompt_cached_fraction = 1.5;  // a broken reading cannot make the load negative
  EXPECT_DOUBLE_EQ(EstimateDemand(s, k1P1D, SloTargets{}).prefill_load, 0);
}

TEST(EstimateDemandTest, ItlMissRaisesDecodePressure) {
  Signals s = WithScore(0);
  s.itl_p99 = 0.6;  // 3× the 0.2 s SLO with 1 decode instance: decode is short by 3×
  const DemandEstimate d = EstimateDemand(s, k1P1D, SloTargets{});
  EXPECT_DOUBLE_EQ(d.itl_ratio, 3);
  EXPECT_DOUBLE_EQ(d.decode_pressure, 3);
  EXPECT_LT(d.score, -0.15);
}

TEST(EstimateDemandTest, TtftSpentWaitingForKvRoomIsDecodePressure) {
  Signals s = WithScore(0);
  s.ttft_p99 = 4;
  s.queue_p99 = 3;  // most of the TTFT is waiting for a decode worker with room
  const DemandEstimate d = EstimateDemand(s, k1P1D, SloTargets{});
  EXPECT_TRUE(d.ttft_from_queue);
  EXPECT_DOUBLE_EQ(d.prefill_pressure, 0.5);
  EXPECT_DOUBLE_EQ(d.decode_pressure, 2);
  s.queue_p99 = 0.1;
  const DemandEstimate e = EstimateDemand(s, k1P1D, SloTargets{});
  EXPECT_FALSE(e.ttft_from_queue);
  EXPECT_DOUBLE_EQ(e.prefill_pressure, 2);
  EXPECT_DOUBLE_EQ(e.decode_pressure, 0.5);
}

TEST(ClassifierTest, ClassifiesTheWorkedScenario) {
  Classifier classifier;
  Signals prompt_heavy;
  prompt_heavy.arrival_rate = 0.5;
  prompt_heavy.prompt_token_rate = 500;
  prompt_heavy.output_tokens_mean = 10;
  prompt_heavy.prefill_tokens_per_busy_second = 350;
  prompt_heavy.decode_tokens_per_busy_second = 150;
  Classification c = classifier.Classify(prompt_heavy, k1P1D, 0);
  EXPECT_EQ(c.cls, TrafficClass::kPromptHeavy);
  EXPECT_TRUE(c.changed);

  Signals generation_heavy = prompt_heavy;
  generation_heavy.arrival_rate = 1;
  generation_heavy.prompt_token_rate = 50;
  generation_heavy.output_tokens_mean = 200;
  c = classifier.Classify(generation_heavy, {2, 1}, 60);
  EXPECT_EQ(c.cls, TrafficClass::kGenerationHeavy);
  // Still short of decode relative to the instances after the rebalance to 1P2D.
  EXPECT_EQ(classifier.Classify(generation_heavy, {1, 2}, 120).cls,
            TrafficClass::kGenerationHeavy);
}

TEST(ClassifierTest, EnteringNeedsTheEnterThreshold) {
  Classifier classifier({.enter_threshold = 0.15, .exit_threshold = 0.05, .min_dwell_s = 0});
  EXPECT_EQ(classifier.Classify(WithScore(0.10), k1P1D, 0).cls, TrafficClass::kBalanced);
  EXPECT_EQ(classifier.Classify(WithScore(-0.10), k1P1D, 1).cls, TrafficClass::kBalanced);
  EXPECT_EQ(classifier.Classify(WithScore(0.16), k1P1D, 2).cls, TrafficClass::kPromptHeavy);
}

TEST(ClassifierTest, ScoreJustAboveExitKeepsTheClass) {
  Classifier classifier({.enter_threshold = 0.15, .exit_threshold = 0.05, .min_dwell_s = 0});
  ASSERT_EQ(classifier.Classify(WithScore(0.2), k1P1D, 0).cls, TrafficClass::kPromptHeavy);
  for (int t = 1; t <= 20; ++t) {
    const Classification c = classifier.Classify(WithScore(0.06), k1P1D, t);
    EXPECT_EQ(c.cls, TrafficClass::kPromptHeavy) << "t=" << t;
    EXPECT_FALSE(c.changed);
  }
  EXPECT_EQ(classifier.Classify(WithScore(0.04), k1P1D, 21).cls, TrafficClass::kBalanced);

  ASSERT_EQ(classifier.Classify(WithScore(-0.2), k1P1D, 22).cls,
            TrafficClass::kGenerationHeavy);
  EXPECT_EQ(classifier.Classify(WithScore(-0.06), k1P1D, 23).cls,
            TrafficClass::kGenerationHeavy);
  EXPECT_EQ(classifier.Classify(WithScore(-0.04), k1P1D, 24).cls, TrafficClass::kBalanced);
}

TEST(ClassifierTest, StrongOppositeSignalJumpsStraightAcross) {
  Classifier classifier({.min_dwell_s = 0});
  ASSERT_EQ(classifier.Classify(WithScore(0.3), k1P1D, 0).cls, TrafficClass::kPromptHeavy);
  EXPECT_EQ(classifier.Classify(WithScore(-0.3), k1P1D, 1).cls,
            TrafficClass::kGenerationHeavy);
}

TEST(ClassifierTest, HonoursMinimumDwell) {
  Classifier classifier({.min_dwell_s = 30});
  ASSERT_EQ(classifier.Classify(WithScore(0.3), k1P1D, 100).cls, TrafficClass::kPromptHeavy);
  for (double t : {105.0, 115.0, 129.9}) {
    EXPECT_EQ(classifier.Classify(WithScore(-0.3), k1P1D, t).cls, TrafficClass::kPromptHeavy)
        << "t=" << t;
  }
  const Classification c = classifier.Classify(WithScore(-0.3), k1P1D, 130);
  EXPECT_EQ(c.cls, TrafficClass::kGenerationHeavy);
  EXPECT_TRUE(c.changed);
  EXPECT_EQ(classifier.Classify(WithScore(0), k1P1D, 140).cls, TrafficClass::kGenerationHeavy);
}

TEST(ClassifierTest, MissingDataKeepsTheClass) {
  Classifier classifier({.min_dwell_s = 0});
  ASSERT_EQ(classifier.Classify(WithScore(0.3), k1P1D, 0).cls, TrafficClass::kPromptHeavy);

  Signals unmeasured = WithScore(-0.3);
  unmeasured.decode_tokens_per_busy_second = kNoData;  // no decode worker measured yet
  Classification c = classifier.Classify(unmeasured, k1P1D, 10);
  EXPECT_EQ(c.cls, TrafficClass::kPromptHeavy);
  EXPECT_FALSE(HasData(c.demand.score));

  EXPECT_EQ(classifier.Classify(Signals{}, k1P1D, 20).cls, TrafficClass::kPromptHeavy);
  EXPECT_EQ(classifier.Classify(Signals{}, {0, 0}, 30).cls, TrafficClass::kPromptHeavy);
  Signals idle = WithScore(0);
  idle.arrival_rate = 0;  // no traffic: nothing to compare
  EXPECT_EQ(classifier.Classify(idle, k1P1D, 40).cls, TrafficClass::kPromptHeavy);
}

TEST(ClassifierTest, RejectsThresholdsWithoutHysteresis) {
  EXPECT_FALSE(ValidateClassifierOptions({.enter_threshold = 0.1, .exit_threshold = 0.2}).ok());
  EXPECT_FALSE(ValidateClassifierOptions({.enter_threshold = 0}).ok());
  EXPECT_FALSE(ValidateClassifierOptions({.min_dwell_s = -1}).ok());
  EXPECT_TRUE(ValidateClassifierOptions({}).ok());
}

}  // namespace
}  // namespace tandem::controller
