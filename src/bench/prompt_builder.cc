#include "bench/prompt_builder.h"

#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem::bench {
namespace {

bool IsSpaceWord(const std::string& piece) {
  if (piece.size() < 2 || piece[0] != ' ') return false;
  for (size_t i = 1; i < piece.size(); ++i) {
    const char c = piece[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return false;
  }
  return true;
}

constexpr int kMaxFixups = 32;

}  // namespace

absl::StatusOr<std::unique_ptr<PromptBuilder>> PromptBuilder::Create(const text::Tokenizer* tokenizer,
                                                                     const text::ChatTemplate* chat_template) {
  auto b = std::unique_ptr<PromptBuilder>(new PromptBuilder(tokenizer, chat_template));
  for (int32_t id = 0; id < tokenizer->vocab_size(); ++id) {
    if (tokenizer->IsSpecial(id)) continue;
    std::string piece = tokenizer->TokenToPiece(id, /*render_special=*/false);
    if (!IsSpaceWord(piece)) continue;
    const auto ids = tokenizer->Encode(piece, /*add_special=*/false, /*parse_special=*/false);
    if (ids.size() == 1 && ids[0] == id) b->words_.push_back(std::move(piece));
  }
  if (b->words_.empty()) {
    return absl::FailedPreconditionError(
        "the tokenizer has no single-token words (a space and ASCII letters) to build prompts from");
  }
  return b;
}

int PromptBuilder::Count(const Prompt& prompt) const {
  if (chat_template_ == nullptr) {
    return static_cast<int>(tokenizer_->Encode(prompt.text, /*add_special=*/true, /*parse_special=*/false).size());
  }
  std::vector<text::ChatMessage> messages;
  if (!prompt.system.empty()) messages.push_back({"system", prompt.system});
  messages.push_back({"user", prompt.text});
  const std::string rendered = chat_template_->Apply(messages, /*add_generation_prompt=*/true);
  return static_cast<int>(tokenizer_->Encode(rendered, /*add_special=*/false, /*parse_special=*/true).size());
}

Prompt PromptBuilder::Assemble(const std::string& prefix, const std::vector<int>& words) const {
  Prompt p;
  std::string* body = &p.text;
  if (chat_template_ != nullptr) {
    p.system = prefix;
  } else {
    p.text = prefix;
  }
  for (int w : words) *body += words_[w];
  return p;
}

int PromptBuilder::MinTokens(const std::string& prefix) const {
  return Count(Assemble(prefix, {})) + 1;
}

std::string PromptBuilder::Words(int tokens, Rng& rng) const {
  std::uniform_int_distribution<int> pick(0, static_cast<int>(words_.size()) - 1);
  std::string out;
  for (int i = 0; i < tokens; ++i) out += words_[pick(rng)];
  return out;
}

absl::StatusOr<Prompt> PromptBuilder::Build(int tokens, Rng& rng, const std::string& prefix) const {
  const int fixed = Count(Assemble(prefix, {}));
  if (tokens < fixed + 1) {
    return absl::InvalidArgumentError(
        StrCat("a prompt of ", tokens, " tokens is too short: the fixed part alone (BOS, chat template, ",
               "shared prefix) is ", fixed, " tokens"));
  }
  std::uniform_int_distribution<int> pick(0, static_cast<int>(words_.size()) - 1);
  std::vector<int> words;
  words.reserve(tokens - fixed);
  for (int i = fixed; i < tokens; ++i) words.push_back(pick(rng));
  for (int attempt = 0; attempt < kMaxFixups; ++attempt) {
    Prompt p = Assemble(prefix, words);
    const int n = Count(p);
    if (n == tokens) return p;
    if (n < tokens) {
      for (int i = n; i < tokens; ++i) words.push_back(pick(rng));
    } else if (static_cast<int>(words.size()) > n - tokens) {
      words.resize(words.size() - (n - tokens));
    } else {
      words.assign(1, pick(rng));  // one word still too long: try another
    }
  }
  return absl::InternalError(StrCat("could not build a prompt of exactly ", tokens, " tokens with this tokenizer"));
}

}  // namespace tandem::bench
