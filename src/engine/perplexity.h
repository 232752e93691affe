// Teacher-forced perplexity of a model over a token stream, computed as llama.cpp's
// `llama-perplexity` computes it, so the two can be compared number for number: the stream is cut
// into whole chunks of `ctx` tokens (a partial last chunk is dropped), each chunk is run on its own
// (its first token replaced by BOS when the model adds one), and only the second half of each
// chunk is scored, so every scored token has at least ctx/2 tokens of context:
//
//   perplexity = exp(mean over scored positions i of -log softmax(logits[i])[token[i + 1]])
//
// The error is the standard error of that mean, times the perplexity (llama.cpp's "+/-").
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"

namespace tandem {

struct PerplexityOptions {
  int ctx = 512;                // tokens per chunk; at least 4
  int max_chunks = 0;           // score at most this many chunks; 0: all whole chunks
  std::optional<int32_t> bos;   // when set, each chunk's first token is replaced by it
  int batch = 512;              // tokens per forward pass
};

struct PerplexityProgress {
  int chunk = 0;       // chunks done, 1-based
  int chunks = 0;      // chunks in all
  double running_ppl = 0;
  double elapsed_s = 0;
};

struct PerplexityResult {
  double ppl = 0;
  double ppl_error = 0;
  int chunks = 0;
  int64_t scored_tokens = 0;
  std::vector<double> running_ppl;  // the perplexity over the chunks so far, after each chunk
  double seconds = 0;
};

// log softmax(logits)[target], with the sum of exponentials in double precision.
double TokenLogProb(std::span<const float> logits, int32_t target);

// The perplexity of `engine`'s model over `tokens` (see the file comment). InvalidArgument when
// the stream is shorter than two chunks (as llama.cpp) or ctx is out of range; the engine's error
// when a pass fails (ResourceExhausted: the KV cache cannot hold ctx tokens).
absl::StatusOr<PerplexityResult> ComputePerplexity(
    Engine& engine, const std::vector<int32_t>& tokens, const PerplexityOptions& options,
    const std::function<void(const PerplexityProgress&)>& progress = {});

}  // namespace tandem
