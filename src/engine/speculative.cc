#include "engine/speculative.h"

#include <algorithm>

namespace tandem {

NgramProposer::NgramProposer(int min_ngram, int max_ngram)
    : min_ngram_(std::max(1, min_ngram)), max_ngram_(std::max(std::max(1, min_ngram), max_ngram)) {}

void NgramProposer::Propose(std::span<const int32_t> tokens, int max_tokens, std::vector<int32_t>* draft) const {
  const int64_t len = static_cast<int64_t>(tokens.size());
  if (max_tokens <= 0) return;
  for (int64_t n = std::min<int64_t>(max_ngram_, len - 1); n >= min_ngram_; --n) {
    const std::span<const int32_t> suffix = tokens.subspan(len - n);
    // The latest earlier occurrence (start i, i + n < len) with max_tokens tokens after it, else
    // the one with the most: in a run of one repeated token the latest match has only one after it.
    int64_t best = -1;
    int64_t best_count = 0;
    for (int64_t i = len - n - 1; i >= 0 && best_count < max_tokens; --i) {
      if (!std::equal(suffix.begin(), suffix.end(), tokens.begin() + i)) continue;
      const int64_t count = std::min<int64_t>(max_tokens, len - (i + n));
      if (count > best_count) {
        best = i + n;
        best_count = count;
      }
    }
    if (best >= 0) {
      draft->insert(draft->end(), tokens.begin() + best, tokens.begin() + best + best_count);
      return;
    }
  }
}

int DraftLength(const DraftRecord& record, int max_tokens, double draft_cost) {
  if (draft_cost <= 0) return max_tokens;
  const double a = record.KeepRate();
  int len = 0;
  for (double gain = a; len < max_tokens && gain >= draft_cost; gain *= a) ++len;
  return len;
}

}  // namespace tandem
