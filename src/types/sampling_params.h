// Per-request sampling parameters: what the router resolves from a client's request, carries to
// the prefill and decode workers, and the engine's sampler follows (engine/sampling.h).
//
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"

namespace tandem {

// Temperatures below this are greedy: dividing logits by a denormal temperature overflows them
// to infinities (vLLM uses the same epsilon).
inline constexpr float kGreedyTemperature = 1e-5f;

struct SamplingParams {
  float temperature = 1.0f;  // below kGreedyTemperature (0 included) = greedy
  float top_p = 1.0f;        // (0, 1]
  int top_k = 0;             // 0 = off
  std::optional<uint64_t> seed;
  int max_tokens = 16;       // generated tokens, >= 1
  bool ignore_eos = false;   // keep going past end-of-generation tokens
  std::vector<int32_t> stop_token_ids;

  absl::Status Validate(int vocab_size) const;
  bool greedy() const { return !(temperature >= kGreedyTemperature); }  // NaN is greedy too
};

}  // namespace tandem
