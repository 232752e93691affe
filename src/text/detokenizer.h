// Streaming detokenization: token ids in, UTF-8 text out, one token at a time.
//
// A token's bytes can end in the middle of a character (byte-level BPE splits rare
// characters, emoji for instance, over several tokens). Push() holds such an incomplete
// sequence back until the tokens that complete it arrive, so every string it returns is
// well-formed UTF-8 and can be sent to a client as is. Bytes that can never become a
// character are emitted as U+FFFD (one per maximal ill-formed subpart, as Python's
// errors="replace"). Flush() ends the stream. The concatenation of everything returned equals
// SanitizeUtf8(tokenizer.Decode(ids)), which is Decode(ids) when that is well-formed.
//
// Thread-safety: not thread-safe (one per stream); the Tokenizer may be shared.
// Ownership: borrows the Tokenizer, which must outlive this object.
#pragma once

#include <cstdint>
#include <string>

#include "text/tokenizer.h"

namespace tandem::text {

class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer& tokenizer, bool render_special = false)
      : tokenizer_(tokenizer), render_special_(render_special) {}

  // Adds one token; returns the text it completes (possibly empty).
  std::string Push(int32_t id);
  // Returns what is still held back, an incomplete sequence, as U+FFFD; then starts afresh.
  std::string Flush();
  // Bytes held back, waiting for the rest of their character (0..3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer& tokenizer_;
  const bool render_special_;
  std::string pending_;
};

}  // namespace tandem::text
