// Prompts whose token count is exact for the served model.
//
// The text is made of randomly drawn vocabulary words: tokens whose piece is a space followed
// by ASCII letters (" the", " Paris") and that encode back to themselves alone. Byte-level BPE
// pre-tokenizers (GPT-2, SmolLM, Llama 3, Qwen2) split " word" runs into separate words, so a
// run of such words costs one token per word; the result is still re-encoded exactly as the
// server will encode it, and words are added or removed until the count is exact:
//  * /v1/completions: Encode(prompt, add_special=true, parse_special=false) - the BOS the
//    vocabulary asks for is part of the count (tandem's router, llama-server and vLLM do so);
//  * /v1/chat/completions: Encode(template(messages, add_generation_prompt), add_special=false,
//    parse_special=true) - the template's tokens (and a default system prompt it inserts) are
//    part of the count, and the user message is sized so the whole templated prompt is exact.
// Shared prefixes: a prefix of N word tokens is the system message (chat) or the start of the
// prompt text (completions), followed by unique words.
//
// Thread-safety: immutable after Create(); Build/Count may run concurrently (each caller owns
// its generator). The tokenizer and chat template must outlive the builder.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/arrivals.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace tandem::bench {

// A prompt: for completions `text` is the whole prompt and `system` is empty; for chat they
// are the system message (empty: none) and the user message.
struct Prompt {
  std::string system;
  std::string text;
};

class PromptBuilder {
 public:
  // `chat_template` null: /v1/completions prompts; else chat prompts rendered with it.
  // FailedPrecondition when the vocabulary has no single-token words to build text from.
  static absl::StatusOr<std::unique_ptr<PromptBuilder>> Create(const text::Tokenizer* tokenizer,
                                                               const text::ChatTemplate* chat_template);

  // Tokens the server counts for `prompt`.
  int Count(const Prompt& prompt) const;

  // The fewest tokens a prompt with this system message (chat) or prefix text (completions)
  // can have: the fixed part plus one word.
  int MinTokens(const std::string& prefix = {}) const;

  // Words worth exactly `tokens` tokens on their own (a shared prefix).
  std::string Words(int tokens, Rng& rng) const;

  // A prompt of exactly `tokens` tokens starting with `prefix` (see the file comment).
  // InvalidArgument when `tokens` < MinTokens(prefix); Internal if no exact text was found.
  absl::StatusOr<Prompt> Build(int tokens, Rng& rng, const std::string& prefix = {}) const;

  bool chat() const { return chat_template_ != nullptr; }
  size_t vocabulary_words() const { return words_.size(); }

 private:
  PromptBuilder(const text::Tokenizer* tokenizer, const text::ChatTemplate* chat_template)
      : tokenizer_(tokenizer), chat_template_(chat_template) {}
  Prompt Assemble(const std::string& prefix, const std::vector<int>& words) const;

  const text::Tokenizer* tokenizer_;
  const text::ChatTemplate* chat_template_;
  std::vector<std::string> words_;  // pieces that are one token each
};

}  // namespace tandem::bench
