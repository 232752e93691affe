#include "engine/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "common/strings.h"
#include "engine/sampling.h"

namespace tandem {

double TokenLogProb(std::span<const float> logits, int32_t target) {
  return static_cast<double>(logits[target]) - LogSumExp(logits);
}

absl::StatusOr<PerplexityResult> ComputePerplexity(Engine& engine, const std::vector<int32_t>& tokens,
                                                   const PerplexityOptions& options,
                                                   const std::function<void(const PerplexityProgress&)>& progress) {
  const int ctx = options.ctx;
  if (ctx < 4) return absl::InvalidArgumentError(StrCat("the context must be at least 4 tokens, not ", ctx));
  if (ctx > engine.max_model_len()) {
    return absl::InvalidArgumentError(
        StrCat("a context of ", ctx, " tokens exceeds the model's maximum of ", engine.max_model_len()));
  }
  if (tokens.size() < 2 * static_cast<size_t>(ctx)) {
    return absl::InvalidArgumentError(StrCat("the text is ", tokens.size(), " tokens; perplexity with a context of ",
                                             ctx, " needs at least ", 2 * ctx, " (two chunks)"));
  }
  int chunks = static_cast<int>(tokens.size() / ctx);
  if (options.max_chunks > 0) chunks = std::min(chunks, options.max_chunks);
  const int first = ctx / 2;
  const size_t vocab = engine.model_config().vocab_size;
  const auto start_time = std::chrono::steady_clock::now();
  PerplexityResult result;
  result.chunks = chunks;
  double nll = 0, nll2 = 0;
  for (int c = 0; c < chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + static_cast<size_t>(c) * ctx,
                               tokens.begin() + static_cast<size_t>(c + 1) * ctx);
    if (options.bos) chunk[0] = *options.bos;
    auto logits = engine.ScoreTokens(chunk, std::max(options.batch, 1), first);
    if (!logits.ok()) return logits.status();
    // Row r holds the prediction for position first + r + 1; the chunk's last row predicts
    // nothing inside it.
    for (int r = 0; r + first + 1 < ctx; ++r) {
      const std::span<const float> row(logits->data() + r * vocab, vocab);
      const double lp = TokenLogProb(row, chunk[first + r + 1]);
      nll -= lp;
      nll2 += lp * lp;
      ++result.scored_tokens;
    }
    result.running_ppl.push_back(std::exp(nll / result.scored_tokens));
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
    if (progress) progress({c + 1, chunks, result.running_ppl.back(), result.seconds});
  }
  const double n = static_cast<double>(result.scored_tokens);
  const double mean = nll / n;
  const double variance = nll2 / n - mean * mean;
  result.ppl = std::exp(mean);
  result.ppl_error = variance > 0 && n > 1 ? std::sqrt(variance / (n - 1)) * result.ppl : 0;
  return result;
}

}  // namespace tandem
