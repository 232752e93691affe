// The iteration cost model: the fit recovers known coefficients, keeps them non-negative,
// survives a JSON round trip, and the token budget follows the ITL SLO.
#include "sim/cost_model.h"

#include <random>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem::sim {
namespace {

IterationShape Shape(int64_t tokens, int64_t sampled, int64_t pairs, int64_t kv_read = 0) {
  return IterationShape{.tokens = tokens, .sampled = sampled, .attention_pairs = pairs, .sequences = sampled,
                        .kv_read_tokens = kv_read};
}

std::vector<IterationSample> SamplesOf(const IterationCost& truth, double noise, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> n(0, noise);
  std::vector<IterationSample> out;
  for (int chunk : {16, 64, 256, 512}) {
    for (int ctx : {0, 512, 1536}) {
      out.push_back({Shape(chunk, 1, int64_t{chunk} * ctx + int64_t{chunk} * (chunk + 1) / 2, ctx + chunk), 0, "prefill"});
    }
  }
  for (int b : {1, 4, 16, 32}) {
    for (int ctx : {64, 1024}) out.push_back({Shape(b, b, int64_t{b} * (ctx + 1), int64_t{b} * (ctx + 1)), 0, "decode"});
  }
  for (IterationSample& s : out) s.seconds = truth.Seconds(s.shape) * (1 + n(rng));
  return out;
}

TEST(IterationCost, FitRecoversTheCoefficientsOfExactSamples) {
  IterationCost truth{.fixed_s = 0.006, .per_token_s = 0.00175, .per_sample_s = 0.0012, .per_attention_s = 2e-8,
                      .per_kv_read_s = 3e-7};
  auto fit = FitIterationCost(SamplesOf(truth, 0, 1));
  ASSERT_TRUE(fit.ok()) << fit.status();
  EXPECT_NEAR(fit->fixed_s, truth.fixed_s, 1e-6);
  EXPECT_NEAR(fit->per_token_s, truth.per_token_s, 1e-8);
  EXPECT_NEAR(fit->per_sample_s, truth.per_sample_s, 1e-8);
  EXPECT_NEAR(fit->per_attention_s, truth.per_attention_s, 1e-12);
  EXPECT_NEAR(fit->per_kv_read_s, truth.per_kv_read_s, 1e-11);
  EXPECT_LT(Evaluate(*fit, SamplesOf(truth, 0, 1)).max_abs_rel_error, 1e-6);
}

TEST(IterationCost, FitOfNoisySamplesStaysClose) {
  IterationCost truth{.fixed_s = 0.006, .per_token_s = 0.00175, .per_sample_s = 0.0012, .per_attention_s = 2e-8};
  auto samples = SamplesOf(truth, 0.03, 7);
  auto fit = FitIterationCost(samples);
  ASSERT_TRUE(fit.ok());
  EXPECT_NEAR(fit->per_token_s, truth.per_token_s, 0.1 * truth.per_token_s);
  const FitQuality q = Evaluate(*fit, samples);
  EXPECT_LT(q.mean_abs_rel_error, 0.05);
}

TEST(IterationCost, ATermThatWouldBeNegativeIsDroppedNotFitted) {
  // No attention cost at all and noise: an unconstrained fit may go negative; this one must not.
  IterationCost truth{.fixed_s = 0.002, .per_token_s = 0.001, .per_sample_s = 0.0005, .per_attention_s = 0};
  auto fit = FitIterationCost(SamplesOf(truth, 0.02, 3));
  ASSERT_TRUE(fit.ok());
  EXPECT_GE(fit->fixed_s, 0);
  EXPECT_GE(fit->per_token_s, 0);
  EXPECT_GE(fit->per_sample_s, 0);
  EXPECT_GE(fit->per_attention_s, 0);
  EXPECT_GE(fit->per_kv_read_s, 0);
}

TEST(IterationCost, FitRejectsTooFewOrBadSamples) {
  EXPECT_FALSE(FitIterationCost({{Shape(1, 1, 1), 0.01, "decode"}}).ok());
  std::vector<IterationSample> bad(5, {Shape(8, 8, 8), -1, "decode"});
  EXPECT_FALSE(FitIterationCost(bad).ok());
}

TEST(IterationCost, MinimumIterationTimeIsAFloor) {
  IterationCost c{.fixed_s = 0.001, .per_token_s = 0.001, .min_iteration_s = 0.005};
  EXPECT_DOUBLE_EQ(c.Seconds(Shape(1, 1, 0)), 0.005);
  EXPECT_DOUBLE_EQ(c.Seconds(Shape(9, 1, 0)), 0.010);
}

TEST(Profile, RoundTripsThroughJsonAndPicksTheEntryForAThreadCount) {
  Profile p;
  p.model = {"m", 23040, 100 << 20, 8192};
  p.machine = "test";
  p.transfer = {0.001, 1e9, "flags"};
  p.token_budget = 256;
  p.token_budget_itl_slo_ms = 50;
  for (int t : {1, 2, 8}) {
    WorkerProfile w;
    w.threads = t;
    w.cost.fixed_s = 0.001 * t;
    w.cost.per_token_s = 0.0001;
    w.samples.push_back({Shape(3, 1, 6), 0.002, "prefill"});
    p.workers.push_back(w);
  }
  auto back = ProfileFromJson(ToJson(p));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->model.kv_bytes_per_token, 23040);
  EXPECT_EQ(back->token_budget, 256);
  ASSERT_EQ(back->workers.size(), 3u);
  EXPECT_DOUBLE_EQ(back->workers[1].cost.fixed_s, 0.002);
  EXPECT_EQ(back->workers[2].samples.at(0).shape.attention_pairs, 6);
  EXPECT_EQ(back->ForThreads(2)->threads, 2);
  EXPECT_EQ(back->ForThreads(4)->threads, 2);   // nearest below
  EXPECT_EQ(back->ForThreads(16)->threads, 8);
  nlohmann::json broken = ToJson(p);
  broken["workers"][0]["iteration_cost"]["per_token_s"] = -1;
  EXPECT_FALSE(ProfileFromJson(broken).ok());
  EXPECT_FALSE(ProfileFromJson(nlohmann::json{{"kind", "something else"}}).ok());
}

TEST(TokenBudget, LargestBudgetWhoseIterationMeetsTheSlo) {
  IterationCost c{.fixed_s = 0.005, .per_token_s = 0.001};
  const std::vector<int> candidates = {16, 32, 64, 128, 256, 512};
  // 5 ms + budget x 1 ms <= 70 ms  ->  budget <= 65: 64.
  EXPECT_EQ(PickTokenBudget(c, 0.070, candidates, 8, 0), 64);
  EXPECT_EQ(PickTokenBudget(c, 0.600, candidates, 8, 0), 512);
  EXPECT_EQ(PickTokenBudget(c, 0.010, candidates, 8, 0), std::nullopt);
}

}  // namespace
}  // namespace tandem::sim
