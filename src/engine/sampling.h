// Per-request sampling parameters and the token sampler.
//
// Order of operations (as vLLM): the logit modifiers (ApplyLogitModifiers: logit_bias, then the
// repetition, frequency and presence penalties), temperature, min-p, top-k, then top-p
// (nucleus) over the renormalised distribution, then a draw from the request's own generator. Temperature 0 is
// greedy (argmax, lowest id on ties). The generator is std::mt19937_64, whose output the C++
// standard fixes, seeded per request: the same seed gives the same tokens on every machine and
// whatever else is in the batch.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/status/status.h"
#include "types/sampling_params.h"

namespace tandem {

class SamplerRng {
 public:
  explicit SamplerRng(uint64_t seed) : engine_(seed) {}
  // Uniform in [0, 1) with 53 random bits.
  double Uniform() {
    ++draws_;
    return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
  }
  // Skips n draws (to continue a sequence sampled elsewhere).
  void Discard(int64_t n) {
    engine_.discard(static_cast<unsigned long long>(n));
    draws_ += n;
  }
  int64_t draws() const { return draws_; }

 private:
  std::mt19937_64 engine_;
  int64_t draws_ = 0;
};

// What the penalties need of one request's tokens: each token's count in the output so far
// and the set of tokens seen anywhere (prompt or output). Fed the request's growing token list.
class TokenHistory {
 public:
  // Takes in the tokens not seen yet; those at index >= output_start are output.
  void Update(std::span<const int32_t> tokens, size_t output_start);
  const std::unordered_map<int32_t, int32_t>& output_counts() const { return output_counts_; }
  const std::unordered_set<int32_t>& seen() const { return seen_; }

 private:
  std::unordered_map<int32_t, int32_t> output_counts_;
  std::unordered_set<int32_t> seen_;
  size_t consumed_ = 0;
};

// Applies `params`' logit_bias, then its repetition, frequency and presence penalties, to one
// row of logits in place. Only the tokens named by the bias or the history change.
void ApplyLogitModifiers(std::span<float> logits, const SamplingParams& params, const TokenHistory& history);

// log(sum(exp(logits))), computed stably (the maximum subtracted first) with a double sum:
// log softmax(logits)[i] = logits[i] - LogSumExp(logits).
double LogSumExp(std::span<const float> logits);

// The log-probability of `token` under a log-softmax of `logits`, its rank (1 + the tokens
// ahead of it: a larger logit, or an equal one and a lower id), and the `k` most likely
// tokens' (ties: lower id first). `scratch` is reused between calls.
TokenLogprob ComputeLogprobs(std::span<const float> logits, int32_t token, int k,
                             std::vector<std::pair<float, int32_t>>& scratch);

// Returns the index of the largest logit (the lowest index on ties).
int32_t ArgMax(std::span<const float> logits);

// Samples one token id. `scratch` is reused between calls to avoid allocations.
int32_t SampleToken(std::span<const float> logits, const SamplingParams& params, SamplerRng& rng,
                    std::vector<std::pair<float, int32_t>>& scratch);

}  // namespace tandem
