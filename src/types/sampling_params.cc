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
  for (const auto& [id, bias] : logit_bias) {
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(StrCat("logit_bias token id ", id, " is outside the vocabulary"));
    }
    if (!(bias >= -100.0f && bias <= 100.0f)) {
      return absl::InvalidArgumentError(StrCat("logit_bias for token ", id, " must be in [-100, 100], got ", bias));
    }
  }
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) {
    return absl::InvalidArgumentError(StrCat("presence_penalty must be in [-2, 2], got ", presence_penalty));
  }
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) {
    return absl::InvalidArgumentError(StrCat("frequency_penalty must be in [-2, 2], got ", frequency_penalty));
  }
  if (!(repetition_penalty > 0.0f && repetition_penalty <= 10.0f)) {
    return absl::InvalidArgumentError(StrCat("repetition_penalty must be in (0, 10], got ", repetition_penalty));
  }
  if (!(min_p >= 0.0f && min_p <= 1.0f)) {
    return absl::InvalidArgumentError(StrCat("min_p must be in [0, 1], got ", min_p));
  }
  if (prompt_logprobs < -1 || prompt_logprobs > kMaxLogprobs) {
    return absl::InvalidArgumentError(
        StrCat("prompt_logprobs must be in [-1, ", kMaxLogprobs, "], got ", prompt_logprobs));
  }
  if (logprobs < -1 || logprobs > kMaxLogprobs) {
    return absl::InvalidArgumentError(StrCat("logprobs must be in [-1, ", kMaxLogprobs, "], got ", logprobs));
  }
  // Not bounded by max_tokens here: a prefill worker runs the request for its first token only
  // (max_tokens 1), and a resumed one for what is left. The front doors check it against the
  // request's own max_tokens.
  if (min_tokens < 0) return absl::InvalidArgumentError(StrCat("min_tokens must be >= 0, got ", min_tokens));
  if (output_in_prompt < 0) {
    return absl::InvalidArgumentError(StrCat("output_in_prompt must be >= 0, got ", output_in_prompt));
  }
  return absl::OkStatus();
}

}  // namespace tandem
