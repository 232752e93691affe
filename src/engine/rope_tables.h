// RoPE cos/sin tables shared by the backends, so that every backend rotates by the same angles.
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "tandem/backend.h"

namespace tandem {

// cos and sin of the angle of every (position, pair) for `rope`: [max_positions][rotary_dim / 2],
// theta_i = pos * base^(-2i/d) built by repeated multiplication in float as llama.cpp does, so
// that the angles (and hence the logits) agree with it as closely as possible; frequency factors
// divide, freq_scale multiplies. InvalidArgument for an odd or empty rotary_dim, no positions,
// or frequency factors of the wrong count.
absl::Status BuildRopeTables(const RopeConfig& rope, std::vector<float>* cos, std::vector<float>* sin);

}  // namespace tandem
