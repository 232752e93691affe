// Token sampling on the device, one block per row: temperature, then top-k, then top-p over
// the renormalised top-k distribution, then one uniform draw (vLLM's order, as the CPU
// sampler). Temperature <= 0 or top_k == 1 is greedy (argmax, lowest id on ties).
//
// Deterministic: the draw for a row is a pure function of (seeds[r], counters[r]) (splitmix64),
// and every reduction has a fixed order, so the same inputs give the same token on every run
// and whatever else is in the batch. Tokens whose scaled logit ties the top-k/top-p cut-off
// are all kept. The draw walks the kept tokens in id order (the CPU sampler walks them in
// probability order), so a GPU and a CPU draw with the same seed may differ; the distributions
// are the same.
#pragma once

#include <cstdint>

#include "kernels/kernel_types.h"

namespace tandem::kernels {

struct SampleArgs {
  const float* logits = nullptr;  // [rows][stride], vocab used
  int64_t stride = 0;
  int64_t vocab = 0;
  int64_t rows = 0;
  const float* temperature = nullptr;  // [rows] device
  const int32_t* top_k = nullptr;      // [rows] device, 0 = off
  const float* top_p = nullptr;        // [rows] device, (0, 1]
  const uint64_t* seeds = nullptr;     // [rows] device
  const uint64_t* counters = nullptr;  // [rows] device: draw index (e.g. tokens generated)
  int32_t* out = nullptr;              // [rows] device
};

int LaunchSampleTokens(const SampleArgs& a, cudaStream_t stream);

// The uniform in [0, 1) the kernel draws for (seed, counter); exposed for tests.
double SampleUniform(uint64_t seed, uint64_t counter);

}  // namespace tandem::kernels
