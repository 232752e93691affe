#include "engine/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/strings.h"

namespace tandem {

namespace {

// The largest value of a block, in kLanes independent running maxima (no loop-carried
// dependency through one index, so the compiler keeps them in vector registers).
constexpr size_t kLanes = 16;
constexpr size_t kArgMaxBlock = 1024;

float BlockMax(const float* x, size_t n) {
  float lanes[kLanes];
  std::fill(lanes, lanes + kLanes, -std::numeric_limits<float>::infinity());
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) lanes[j] = x[i + j] > lanes[j] ? x[i + j] : lanes[j];
  }
  for (; i < n; ++i) lanes[0] = x[i] > lanes[0] ? x[i] : lanes[0];
  return *std::max_element(lanes, lanes + kLanes);
}

}  // namespace

// Greedy decoding calls this once per token over the whole vocabulary (49,152 logits for
// SmolLM2): the maximum block by block, then the first index holding it in the first block
// that has it, so ties still go to the lowest id.
int32_t ArgMax(std::span<const float> logits) {
  size_t best_block = 0;
  float best = -std::numeric_limits<float>::infinity();
  for (size_t b = 0; b < logits.size(); b += kArgMaxBlock) {
    const float m = BlockMax(logits.data() + b, std::min(kArgMaxBlock, logits.size() - b));
    if (m > best) {
      best = m;
      best_block = b;
    }
  }
  const size_t end = std::min(best_block + kArgMaxBlock, logits.size());
  for (size_t i = best_block; i < end; ++i) {
    if (logits[i] == best) return static_cast<int32_t>(i);
  }
  return 0;  // every logit NaN or -inf
}

void TokenHistory::Update(std::span<const int32_t> tokens, size_t output_start) {
  for (; consumed_ < tokens.size(); ++consumed_) {
    const int32_t t = tokens[consumed_];
    seen_.insert(t);
    if (consumed_ >= output_start) ++output_counts_[t];
  }
}

void ApplyLogitModifiers(std::span<float> logits, const SamplingParams& params, const TokenHistory& history) {
  const auto in_range = [&](int32_t id) { return id >= 0 && static_cast<size_t>(id) < logits.size(); };
  for (const auto& [id, bias] : params.logit_bias) {
    if (in_range(id)) logits[id] += bias;
  }
  if (params.repetition_penalty != 1.0f) {
    const float r = params.repetition_penalty;
    for (int32_t id : history.seen()) {
      if (!in_range(id)) continue;
      logits[id] = logits[id] > 0 ? logits[id] / r : logits[id] * r;
    }
  }
  if (params.frequency_penalty != 0.0f || params.presence_penalty != 0.0f) {
    for (const auto& [id, count] : history.output_counts()) {
      if (!in_range(id)) continue;
      logits[id] -= params.frequency_penalty * static_cast<float>(count) + params.presence_penalty;
    }
  }
}

double LogSumExp(std::span<const float> logits) {
  float max_logit = logits[0];
  for (float x : logits) max_logit = std::max(max_logit, x);
  double sum = 0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - max_logit);
  return max_logit + std::log(sum);
}

TokenLogprob ComputeLogprobs(std::span<const float> logits, int32_t token, int k,
                             std::vector<std::pair<float, int32_t>>& scratch) {
  const double log_z = LogSumExp(logits);
  TokenLogprob out;
  out.logprob = static_cast<float>(logits[token] - log_z);
  const float own = logits[token];
  int32_t ahead = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    ahead += logits[i] > own || (logits[i] == own && static_cast<int32_t>(i) < token) ? 1 : 0;
  }
  out.rank = ahead + 1;
  k = std::min<int>(k, static_cast<int>(logits.size()));
  if (k <= 0) return out;
  // The k best in one pass over the vocabulary: a heap of k (at most 20) whose top is the worst
  // kept. Better: the larger logit, then the smaller id.
  const auto better = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  scratch.clear();
  for (size_t i = 0; i < logits.size(); ++i) {
    const std::pair<float, int32_t> c{logits[i], static_cast<int32_t>(i)};
    if (static_cast<int>(scratch.size()) < k) {
      scratch.push_back(c);
      std::push_heap(scratch.begin(), scratch.end(), better);
    } else if (better(c, scratch.front())) {
      std::pop_heap(scratch.begin(), scratch.end(), better);
      scratch.back() = c;
      std::push_heap(scratch.begin(), scratch.end(), better);
    }
  }
  std::sort_heap(scratch.begin(), scratch.end(), better);
  for (int i = 0; i < k; ++i) out.top.emplace_back(scratch[i].second, static_cast<float>(scratch[i].first - log_z));
  return out;
}

namespace {

// Drops the candidates whose probability is below min_p x the largest one's: a scaled logit
// below max + log(min_p). Returns the new count.
size_t KeepAboveMinP(std::vector<std::pair<float, int32_t>>& scratch, size_t n, float min_p) {
  float max_logit = scratch[0].first;
  for (size_t i = 1; i < n; ++i) max_logit = std::max(max_logit, scratch[i].first);
  const float floor = max_logit + std::log(min_p);
  size_t kept = 0;
  for (size_t i = 0; i < n; ++i) {
    if (scratch[i].first >= floor) scratch[kept++] = scratch[i];
  }
  return kept;
}

}  // namespace

int32_t SampleToken(std::span<const float> logits, const SamplingParams& params, SamplerRng& rng,
                    std::vector<std::pair<float, int32_t>>& scratch) {
  if (params.greedy() || params.top_k == 1) return ArgMax(logits);
  const float inv_t = 1.0f / params.temperature;
  scratch.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) scratch[i] = {logits[i] * inv_t, static_cast<int32_t>(i)};
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t n = scratch.size();
  if (params.min_p > 0.0f) {
    n = KeepAboveMinP(scratch, n, params.min_p);
    scratch.resize(n);
  }
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < n) {
    std::partial_sort(scratch.begin(), scratch.begin() + params.top_k, scratch.end(), by_logit);
    n = params.top_k;
  } else if (params.top_p < 1.0f) {
    // Most of the mass usually sits in a few hundred tokens: sort those first.
    const size_t head = std::min<size_t>(n, 1024);
    std::partial_sort(scratch.begin(), scratch.begin() + head, scratch.end(), by_logit);
  }
  const bool sorted = n < scratch.size() || params.top_p < 1.0f;
  float max_logit = scratch[0].first;
  if (!sorted) {
    for (size_t i = 1; i < n; ++i) max_logit = std::max(max_logit, scratch[i].first);
  }
  double total = 0;
  for (size_t i = 0; i < n; ++i) {
    scratch[i].first = std::exp(scratch[i].first - max_logit);
    total += scratch[i].first;
  }
  if (params.top_p < 1.0f) {
    const double target = params.top_p * total;
    double cum = 0;
    size_t keep = 0;
    for (; keep < n; ++keep) {
      if (keep == 1024 && n > 1024 && params.top_k == 0) {
        // The partially sorted head did not reach top_p: sort the rest too.
        auto by_prob = [](const auto& a, const auto& b) {
          return a.first > b.first || (a.first == b.first && a.second < b.second);
        };
        std::sort(scratch.begin() + keep, scratch.begin() + n, by_prob);
      }
      cum += scratch[keep].first;
      if (cum >= target) {
        ++keep;
        break;
      }
    }
    n = std::min(keep, n);
    total = cum;
  }
  double u = rng.Uniform() * total;
  for (size_t i = 0; i < n; ++i) {
    u -= scratch[i].first;
    if (u < 0) return scratch[i].second;
  }
  return scratch[n - 1].second;
}

}  // namespace tandem
