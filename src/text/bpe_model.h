// Byte-level BPE over one pre-tokenized word (internal to src/text/; Tokenizer is the API).
//
// Follows llama.cpp's llm_tokenizer_bpe_session: the word starts as one symbol per byte;
// the adjacent pair whose merge has the lowest rank is merged first (the leftmost one on a
// tie) until no pair has a merge; every final symbol that is a vocabulary token is emitted,
// and one that is not falls back to the tokens of its single bytes. With ignore_merges a word
// that is itself a token is emitted whole.
//
// Everything is kept as raw bytes (the vocabulary's byte-level alphabet is decoded once at
// build time) and every string that can occur as a symbol (tokens, the two sides and the
// result of every merge, single bytes) gets an integer id, so merging compares integers.
//
// Immutable after Build(); EncodeWord() may be called concurrently.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/strings.h"

namespace tandem::text {

class BpeModel {
 public:
  // `tokens`: the vocabulary in byte-level alphabet form (index = token id); when two tokens
  // have the same text the later id wins, as in llama.cpp. `merges`: "left right" strings in
  // rank order; the first of duplicate merges keeps its rank. Tokens or merges with text
  // outside the alphabet can never match and are skipped.
  static BpeModel Build(std::span<const std::string_view> tokens,
                        std::span<const std::string> merges);

  // Appends the token ids for `word` (raw bytes, non-empty).
  void EncodeWord(std::string_view word, bool ignore_merges, std::vector<int32_t>* out) const;

  // The token whose raw bytes are `bytes`.
  std::optional<int32_t> FindRaw(std::string_view bytes) const;
  // Whether the single byte `b` is a token (else BPE drops it where it stays alone).
  bool HasByteToken(uint8_t b) const { return byte_token_[b] >= 0; }

 private:
  struct Merge {
    int32_t rank;
    int32_t result;  // symbol id of left+right
  };
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  const Merge* FindMerge(int32_t left, int32_t right) const;

  StringMap<int32_t> raw_to_token_;
  std::vector<int32_t> symbol_token_;  // symbol id -> token id, -1 when not a token
  int32_t byte_symbol_[256] = {};
  int32_t byte_token_[256] = {};  // token id of each single byte, -1 when missing
  std::unordered_map<uint64_t, Merge> merges_;
};

}  // namespace tandem::text
