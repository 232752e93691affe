// What a GGUF file says about text: its tokenizer and its chat template (ChatML when the file
// carries none). The router, `tandem generate` and `tandem bench serve` load them the same way,
// here, so a prompt is tokenized identically wherever it is built.
//
// Thread-safety: the result is immutable (Tokenizer and ChatTemplate are safe to share).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "gguf/gguf_file.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace tandem::text {

struct TextModel {
  std::unique_ptr<Tokenizer> tokenizer;
  ChatTemplate chat_template = ChatTemplate::ChatMl();
};

absl::StatusOr<TextModel> LoadTextModel(const gguf::GgufFile& file);

}  // namespace tandem::text
