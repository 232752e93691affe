#include "engine/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>

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

// top_logprobs: the k most likely tokens, best first, ties to the lower id, each with its
// log-softmax; the same list a full sort of the vocabulary gives, and the chosen token's rank its
// place in that sort.
TEST(SamplingTest, LogprobsListTheKMostLikelyTokensAsAFullSortDoes) {
  std::mt19937 rng(3);
  std::vector<float> logits(5000);
  // Few distinct values, so that many ties cross the k-th place.
  for (auto& x : logits) x = static_cast<float>(static_cast<int>(rng() % 40)) * 0.25f;
  double z = 0;
  for (float x : logits) z += std::exp(static_cast<double>(x));
  std::vector<int32_t> order(logits.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  std::vector<std::pair<float, int32_t>> scratch;
  for (int k : {0, 1, 5, 20}) {
    const TokenLogprob lp = ComputeLogprobs(logits, 42, k, scratch);
    EXPECT_NEAR(lp.logprob, logits[42] - std::log(z), 1e-4);
    EXPECT_EQ(lp.rank, std::find(order.begin(), order.end(), 42) - order.begin() + 1) << "k " << k;
    ASSERT_EQ(lp.top.size(), static_cast<size_t>(k));
    for (int i = 0; i < k; ++i) {
      EXPECT_EQ(lp.top[i].first, order[i]) << "k " << k << " rank " << i;
      EXPECT_NEAR(lp.top[i].second, logits[order[i]] - std::log(z), 1e-4);
    }
  }
}

// Greedy decoding's argmax over a vocabulary-sized row: the largest logit wherever it sits (any
// block, the ragged tail), and the lowest id when several hold it.
TEST(SamplingTest, ArgMaxFindsTheLargestLogitAndTheLowestIdOnTies) {
  for (size_t n : {size_t{1}, size_t{17}, size_t{1023}, size_t{1024}, size_t{1025}, size_t{49152}, size_t{49155}}) {
    std::vector<float> logits(n);
    for (size_t i = 0; i < n; ++i) logits[i] = std::sin(static_cast<float>(i) * 0.37f);
    for (size_t at : {size_t{0}, n / 3, n - 1}) {
      std::vector<float> row = logits;
      row[at] = 5.0f;
      EXPECT_EQ(ArgMax(row), static_cast<int32_t>(at)) << n << " " << at;
      for (size_t later : {at + 1, at + 1030, n - 1}) {
        if (later <= at || later >= n) continue;
        std::vector<float> tie = row;
        tie[later] = 5.0f;
        EXPECT_EQ(ArgMax(tie), static_cast<int32_t>(at)) << n << " tie " << at << " " << later;
      }
    }
  }
  std::vector<float> all_low(3000, -std::numeric_limits<float>::infinity());
  EXPECT_EQ(ArgMax(all_low), 0);
  all_low[2500] = -1e30f;
  EXPECT_EQ(ArgMax(all_low), 2500);
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

// OpenAI's frequency and presence penalties count the output only; vLLM's repetition penalty
// covers the prompt too and divides positive logits, multiplies negative ones.
TEST(SamplingTest, PenaltiesChangeExactlyTheTokensTheyShould) {
  const std::vector<int32_t> tokens = {0, 1, 3, /*output:*/ 2, 2, 4};
  TokenHistory history;
  history.Update(std::span(tokens).first(4), 3);  // fed in two parts, as a sequence grows
  history.Update(tokens, 3);
  EXPECT_EQ(history.output_counts().at(2), 2);
  EXPECT_EQ(history.output_counts().at(4), 1);
  EXPECT_FALSE(history.output_counts().contains(0));
  SamplingParams p;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  p.repetition_penalty = 2.0f;
  p.logit_bias = {{5, -1.0f}};
  std::vector<float> logits = Logits();  // {1, 3, 2.5, -1, 3, 0}
  ApplyLogitModifiers(logits, p, history);
  EXPECT_FLOAT_EQ(logits[0], 0.5f);                      // prompt: repetition only
  EXPECT_FLOAT_EQ(logits[1], 1.5f);
  EXPECT_FLOAT_EQ(logits[2], 2.5f / 2 - 2 * 0.5f - 0.25f);  // output twice
  EXPECT_FLOAT_EQ(logits[3], -2.0f);                     // negative: multiplied
  EXPECT_FLOAT_EQ(logits[4], 3.0f / 2 - 0.5f - 0.25f);
  EXPECT_FLOAT_EQ(logits[5], -1.0f);                     // unseen: the bias only
}

TEST(SamplingTest, LogitBiasMovesGreedyPicks) {
  SamplingParams p;
  p.temperature = 0;
  p.logit_bias = {{1, -100.0f}, {4, -100.0f}};
  TokenHistory none;
  std::vector<float> logits = Logits();
  ApplyLogitModifiers(logits, p, none);
  SamplerRng rng(1);
  EXPECT_EQ(Draw(logits, p, rng), 2);
  p.logit_bias = {{3, 100.0f}};
  logits = Logits();
  ApplyLogitModifiers(logits, p, none);
  EXPECT_EQ(Draw(logits, p, rng), 3);
}

TEST(SamplingTest, MinPDropsTokensBelowItsShareOfTheTopProbability) {
  // Probabilities relative to the top: e^(x - 3). min_p 0.5 keeps 1, 2.5 (e^-0.5 = 0.61) and 4.
  SamplingParams p;
  p.min_p = 0.5f;
  SamplerRng rng(3);
  std::map<int32_t, int> seen;
  for (int i = 0; i < 2000; ++i) ++seen[Draw(Logits(), p, rng)];
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_TRUE(seen.contains(1) && seen.contains(2) && seen.contains(4));
  p.min_p = 0;
  for (int i = 0; i < 2000; ++i) ++seen[Draw(Logits(), p, rng)];
  EXPECT_GT(seen.size(), 3u);
}

}  // namespace
}  // namespace tandem
