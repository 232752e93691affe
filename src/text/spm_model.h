// SentencePiece-style tokenization of GGUF "llama" vocabularies (Llama 2, Mistral, TinyLlama):
// internal to src/text/; Tokenizer is the API.
//
// Follows llama.cpp's SPM session: the text (spaces already written as U+2581 "▁") starts as
// one symbol per UTF-8 character; the adjacent pair whose concatenation is a vocabulary token
// with the highest score is merged first (the leftmost on a tie) until no adjacent pair forms
// a token. Each final symbol is its token, or, when it is not one (a character outside the
// vocabulary), the byte-fallback tokens "<0xAB>" of its bytes (else a token whose text is that
// single byte, else the unknown token, else nothing).
//
// Immutable after Build(); Encode() may be called concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/strings.h"

namespace tandem::text {

class SpmModel {
 public:
  // `tokens` and `scores` by id (scores may be empty: all 0); when two tokens have the same
  // text the later id wins, as in llama.cpp. `unk_id` < 0: none.
  static SpmModel Build(std::span<const std::string_view> tokens, std::span<const float> scores,
                        int32_t unk_id);

  // Appends the token ids of `text` (whitespace already escaped).
  void Encode(std::string_view text, std::vector<int32_t>* out) const;

  // Whether byte `b` can be written (a byte-fallback token or a one-byte token for it).
  bool HasByteToken(uint8_t b) const { return byte_token_[b] >= 0; }

 private:
  void AppendBytes(std::string_view bytes, std::vector<int32_t>* out) const;

  StringMap<int32_t> text_to_id_;
  std::vector<float> scores_;
  int32_t byte_token_[256] = {};
  int32_t unk_id_ = -1;
};

// " " -> "▁" (U+2581), as SentencePiece stores spaces.
std::string EscapeSpmWhitespace(std::string_view text);
// "▁" -> " ".
std::string UnescapeSpmWhitespace(std::string_view text);

}  // namespace tandem::text
