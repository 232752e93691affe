#include "text/text_model.h"

#include "common/status_macros.h"

namespace tandem::text {

absl::StatusOr<TextModel> LoadTextModel(const gguf::GgufFile& file) {
  TextModel model;
  TANDEM_ASSIGN_OR_RETURN(auto config, TokenizerConfigFromGguf(file));
  TANDEM_ASSIGN_OR_RETURN(model.tokenizer, Tokenizer::Create(std::move(config)));
  if (!model.tokenizer->chat_template().empty()) {
    TANDEM_ASSIGN_OR_RETURN(model.chat_template,
                            ChatTemplate::FromJinja(model.tokenizer->chat_template(),
                                                    model.tokenizer->token_text(model.tokenizer->bos_id()),
                                                    model.tokenizer->token_text(model.tokenizer->eos_id())));
  }
  return model;
}

}  // namespace tandem::text
