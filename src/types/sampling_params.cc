#include "types/sampling_params.h"

#include <cmath>

#include "common/strings.h"

namespace tandem {

absl::Status SamplingParams::Validate(int vocab_size) const {
  if (!(temperature >= 0.0f) || !std::isfinite(temperature)) {
    return absl::InvalidArgumentError(StrCat("temperature must be >= 0, got ", temperature));
  }
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    return absl::InvalidArgumentError(StrCat("top_p must be in (0, 1], got ", top_p));
  }
  if (top_k < 0) return absl::InvalidArgumentError(StrCat("top_k must be >= 0, got ", top_k));
  if (max_tokens < 1) return absl::InvalidArgumentError(StrCat("max_tokens must be >= 1, got ", max_tokens));
  for (int32_t id : stop_token_ids) {
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(StrCat("stop token id ", id, " is outside the vocabulary"));
    }
  }
  return absl::OkStatus();
}

}  // namespace tandem
