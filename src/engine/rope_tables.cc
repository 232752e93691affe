#include "engine/rope_tables.h"

#include <cmath>

namespace tandem {

absl::Status BuildRopeTables(const RopeConfig& rope, std::vector<float>* cos, std::vector<float>* sin) {
  if (rope.rotary_dim <= 0 || rope.rotary_dim % 2 != 0 || rope.max_positions <= 0) {
    return absl::InvalidArgumentError("invalid RoPE configuration");
  }
  const int half = rope.rotary_dim / 2;
  if (!rope.freq_factors.empty() && static_cast<int>(rope.freq_factors.size()) != half) {
    return absl::InvalidArgumentError("RoPE frequency factors do not match the rotary dimension");
  }
  cos->assign(static_cast<size_t>(rope.max_positions) * half, 0);
  sin->assign(cos->size(), 0);
  const float theta_scale = std::pow(rope.theta, -2.0f / static_cast<float>(rope.rotary_dim));
  for (int pos = 0; pos < rope.max_positions; ++pos) {
    float theta = static_cast<float>(pos);
    for (int i = 0; i < half; ++i) {
      const float ff = rope.freq_factors.empty() ? 1.0f : rope.freq_factors[i];
      const float angle = rope.freq_scale * (theta / ff);
      (*cos)[static_cast<size_t>(pos) * half + i] = std::cos(angle);
      (*sin)[static_cast<size_t>(pos) * half + i] = std::sin(angle);
      theta *= theta_scale;
    }
  }
  return absl::OkStatus();
}

}  // namespace tandem
