// Pre-tokenizers of byte-level BPE vocabularies: they cut text into the pieces ("words") that
// BPE then encodes one by one. Each reproduces the split llama.cpp applies for the GGUF's
// `tokenizer.ggml.pre` (llama-vocab.cpp's regex lists, run by unicode.cpp's hand-written
// scanners and its std::regex fallback), implemented here as scanners over code points:
//
//   gpt2     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   smollm   \p{N} (every number code point alone), then gpt2 on each piece
//   llama3   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   qwen2    llama3 with \p{N} (every number code point alone) instead of \p{N}{1,3}
//   default  [\p{P}$+<=>^~|]+, then gpt2, then \p{N}+, then [0-9][0-9][0-9] (each applied
//            within the pieces of the one before; matches and the text between them become
//            pieces)
//
// `\s` is the Unicode White_Space property and categories are Unicode 15.1, as in llama.cpp.
// Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::text {

enum class PreTokenizerType { kDefault, kGpt2, kSmolLm, kLlama3, kQwen2 };

struct PreTokenizerInfo {
  PreTokenizerType type = PreTokenizerType::kDefault;
  // Look a whole word up in the vocabulary before running BPE on it (llama.cpp's
  // ignore_merges, set for the Llama-3 family).
  bool ignore_merges = false;
  // add_bos when the GGUF does not say (llama.cpp turns it on for the Llama-3 family).
  bool default_add_bos = false;
};

// Maps a `tokenizer.ggml.pre` name to its pre-tokenizer. An empty name means "default", as in
// llama.cpp. Unknown names: InvalidArgument naming it and listing the supported ones.
absl::StatusOr<PreTokenizerInfo> LookupPreTokenizer(std::string_view name);
// The supported names, comma-separated.
std::string SupportedPreTokenizerNames();

// Splits `cps` (code points; invalid bytes as U+FFFD) into words; returns their lengths in
// code points, in order, all > 0, summing to cps.size().
std::vector<uint32_t> PreTokenize(PreTokenizerType type, std::span<const uint32_t> cps);

}  // namespace tandem::text
