#include "text/detokenizer.h"

#include "text/unicode.h"

namespace tandem::text {

std::string IncrementalDetokenizer::Push(int32_t id) {
  tokenizer_.AppendPiece(id, render_special_, &pending_);
  const size_t ready = pending_.size() - IncompleteUtf8Tail(pending_);
  std::string out;
  AppendSanitizedUtf8(std::string_view(pending_).substr(0, ready), &out);
  pending_.erase(0, ready);
  return out;
}

std::string IncrementalDetokenizer::Flush() {
  std::string out = SanitizeUtf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace tandem::text
