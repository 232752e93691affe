#include "engine/sampling.h"

#include <cmath>
#include <map>

#include "gtest/gtest.h"

namespace tandem {
namespace {

std::vector<float> Logits() { return {1.0f, 3.0f, 2.5f, -1.0f, 3.0f, 0.0f}; }

int32_t Draw(const std::vector<float>& logits, const SamplingParams& p, SamplerRng& rng) {
  std::vector<std::pair<float, int32_t>> scratch;
  return SampleToken(logits, p, rng, scratch);
}

TEST(SamplingTest, GreedyPicksTheLargestLogitAndTheLowestIdOnTies) {
  SamplingParams p;
  p.temperature = 0;
  SamplerRng rng(1);
  EXPECT_EQ(Draw(Logits(), p, rng), 1);
  p.temperature = 1.0f;
  p.top_k = 1;
  EXPECT_EQ(Draw(Logits(), p, rng), 1);
}

// A denormal temperature used to turn every logit into an infinity (garbage output with 200).
TEST(SamplingTest, TemperaturesBelowEpsilonAreGreedy) {
  std::vector<float> logits(1000);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i)) * 3;
  const int32_t best = ArgMax(logits);
  for (float t : {1e-45f, 1e-30f, 1e-6f, std::nanf("")}) {
    SamplingParams p;
    p.temperature = t;
    EXPECT_TRUE(p.greedy()) << t;
    SamplerRng rng(5);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(Draw(logits, p, rng), best) << t;
  }
  SamplingParams warm;
  warm.temperature = 1e-4f;
  EXPECT_FALSE(warm.greedy());
}

TEST(SamplingTest, SameSeedSameTokensDifferentSeedDifferentTokens) {
  SamplingParams p;
  p.temperature = 1.5f;
  std::vector<float> logits(1000);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i)) * 3;
  auto run = [&](uint64_t seed) {
    SamplerRng rng(seed);
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) out.push_back(Draw(logits, p, rng));
    return out;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST(SamplingTest, TopKAndTopPOnlyEverReturnAllowedTokens) {
  SamplerRng rng(3);
  SamplingParams k2;
  k2.top_k = 2;
  for (int i = 0; i < 500; ++i) {
    const int32_t t = Draw(Logits(), k2, rng);
    EXPECT_TRUE(t == 1 || t == 4) << t;  // the two 3.0 logits
  }
  SamplingParams p;
  p.top_p = 0.5f;  // tokens 1 and 4 hold ~0.36 each: the nucleus is exactly these two
  for (int i = 0; i < 500; ++i) {
    const int32_t t = Draw(Logits(), p, rng);
    EXPECT_TRUE(t == 1 || t == 4) << t;
  }
}

TEST(SamplingTest, FrequenciesFollowTheSoftmax) {
  SamplerRng rng(11);
  SamplingParams p;
  p.temperature = 1.0f;
  const std::vector<float> logits = {0.0f, std::log(2.0f), std::log(7.0f)};  // probabilities 0.1, 0.2, 0.7
  std::map<int32_t, int> count;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++count[Draw(logits, p, rng)];
  EXPECT_NEAR(count[0] / double(n), 0.1, 0.01);
  EXPECT_NEAR(count[1] / double(n), 0.2, 0.015);
  EXPECT_NEAR(count[2] / double(n), 0.7, 0.015);
  // A low temperature sharpens towards the largest logit.
  p.temperature = 0.2f;
  count.clear();
  for (int i = 0; i < n; ++i) ++count[Draw(logits, p, rng)];
  EXPECT_GT(count[2] / double(n), 0.99);
}

TEST(SamplingTest, NucleusBeyondTheFirstThousandTokensStillSamplesCorrectly) {
  // A flat distribution over 5000 tokens with top_p 0.5 keeps ~2500 of them.
  std::vector<float> flat(5000, 0.0f);
  SamplingParams p;
  p.top_p = 0.5f;
  SamplerRng rng(5);
  int32_t max_seen = 0;
  for (int i = 0; i < 3000; ++i) max_seen = std::max(max_seen, Draw(flat, p, rng));
  EXPECT_GT(max_seen, 2000);
  EXPECT_LT(max_seen, 2600);
}

TEST(SamplingTest, ValidationRejectsNonsense) {
  SamplingParams p;
  EXPECT_TRUE(p.Validate(100).ok());
  p.temperature = -1;
  EXPECT_EQ(p.Validate(100).code(), absl::StatusCode::kInvalidArgument);
  p = SamplingParams();
  p.top_p = 0;
  EXPECT_FALSE(p.Validate(100).ok());
  p = SamplingParams();
  p.top_k = -2;
  EXPECT_FALSE(p.Validate(100).ok());
  p = SamplingParams();
  p.max_tokens = 0;
  EXPECT_FALSE(p.Validate(100).ok());
  p = SamplingParams();
  p.stop_token_ids = {100};
  EXPECT_FALSE(p.Validate(100).ok());
  p.temperature = NAN;
  EXPECT_FALSE(p.Validate(100).ok());
}

}  // namespace
}  // namespace tandem
