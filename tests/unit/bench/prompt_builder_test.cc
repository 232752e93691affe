// Prompts have exactly the requested token count, encoded as the server encodes them: the
// tiny test model always, the bundled SmolLM2 when TANDEM_MODEL is set.
#include "bench/prompt_builder.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/model_paths.h"
#include "testing/tiny_model.h"

namespace tandem::bench {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct Loaded {
  std::unique_ptr<text::Tokenizer> tokenizer;
  std::unique_ptr<text::ChatTemplate> chat_template;
};

Loaded Load(const std::string& path) {
  Loaded l;
  auto file = gguf::GgufFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  auto config = text::TokenizerConfigFromGguf(**file);
  EXPECT_TRUE(config.ok()) << config.status();
  auto tok = text::Tokenizer::Create(*std::move(config));
  EXPECT_TRUE(tok.ok()) << tok.status();
  l.tokenizer = *std::move(tok);
  auto tmpl = text::ChatTemplate::FromJinja(l.tokenizer->chat_template(),
                                            l.tokenizer->token_text(l.tokenizer->bos_id()));
  EXPECT_TRUE(tmpl.ok()) << tmpl.status();
  l.chat_template = std::make_unique<text::ChatTemplate>(*tmpl);
  return l;
}

// What tandem's router counts (router/frontend.cc).
int ServerCount(const Loaded& l, bool chat, const Prompt& p) {
  if (!chat) return static_cast<int>(l.tokenizer->Encode(p.text, true, false).size());
  std::vector<text::ChatMessage> m;
  if (!p.system.empty()) m.push_back({"system", p.system});
  m.push_back({"user", p.text});
  return static_cast<int>(l.tokenizer->Encode(l.chat_template->Apply(m, true), false, true).size());
}

void ExpectExact(const Loaded& l, bool chat, const std::vector<int>& lengths) {
  auto builder = PromptBuilder::Create(l.tokenizer.get(), chat ? l.chat_template.get() : nullptr);
  ASSERT_TRUE(builder.ok()) << builder.status();
  Rng rng(1);
  const int min = (*builder)->MinTokens();
  for (int n : lengths) {
    if (n < min) n = min;
    auto p = (*builder)->Build(n, rng);
    ASSERT_TRUE(p.ok()) << n << ": " << p.status();
    EXPECT_EQ(ServerCount(l, chat, *p), n) << (chat ? "chat " : "completion ") << n;
  }
}

TEST(PromptBuilder, CompletionPromptsAreExactForTheTinyModel) {
  const Loaded l = Load(tandem::testing::TinyModelPath());
  std::vector<int> lengths;
  for (int n = 1; n <= 64; ++n) lengths.push_back(n);
  lengths.insert(lengths.end(), {100, 257, 1000, 3000});
  ExpectExact(l, /*chat=*/false, lengths);
}

TEST(PromptBuilder, ChatPromptsCountTheTemplate) {
  const Loaded l = Load(tandem::testing::TinyModelPath());
  auto builder = PromptBuilder::Create(l.tokenizer.get(), l.chat_template.get());
  ASSERT_TRUE(builder.ok());
  const int min = (*builder)->MinTokens();
  // "<|im_start|>user\n" ... "<|im_end|>\n<|im_start|>assistant\n" is more than a few tokens.
  EXPECT_GT(min, 5);
  std::vector<int> lengths;
  for (int n = min; n <= min + 40; ++n) lengths.push_back(n);
  lengths.insert(lengths.end(), {200, 1000});
  ExpectExact(l, /*chat=*/true, lengths);
}

TEST(PromptBuilder, SharedPrefixesStartEveryPromptAndCountInIt) {
  const Loaded l = Load(tandem::testing::TinyModelPath());
  for (bool chat : {false, true}) {
    auto builder = PromptBuilder::Create(l.tokenizer.get(), chat ? l.chat_template.get() : nullptr);
    ASSERT_TRUE(builder.ok());
    Rng rng(3);
    const std::string prefix = (*builder)->Words(50, rng);
    EXPECT_EQ(static_cast<int>(l.tokenizer->Encode(prefix, false, false).size()), 50);
    for (int n : {(*builder)->MinTokens(prefix), 120, 300}) {
      auto p = (*builder)->Build(n, rng, prefix);
      ASSERT_TRUE(p.ok()) << p.status();
      EXPECT_EQ(ServerCount(l, chat, *p), n);
      if (chat) {
        EXPECT_EQ(p->system, prefix);
      } else {
        EXPECT_THAT(p->text, StartsWith(prefix));
      }
    }
  }
}

TEST(PromptBuilder, SeededAndRefusesImpossibleLengths) {
  const Loaded l = Load(tandem::testing::TinyModelPath());
  auto builder = PromptBuilder::Create(l.tokenizer.get(), l.chat_template.get());
  ASSERT_TRUE(builder.ok());
  Rng a(5), b(5), c(6);
  const int n = (*builder)->MinTokens() + 30;
  EXPECT_EQ((*builder)->Build(n, a)->text, (*builder)->Build(n, b)->text);
  EXPECT_NE((*builder)->Build(n, a)->text, (*builder)->Build(n, c)->text);
  auto too_short = (*builder)->Build((*builder)->MinTokens() - 1, a);
  EXPECT_EQ(too_short.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_short.status().message(), HasSubstr("too short"));
  EXPECT_GT((*builder)->vocabulary_words(), 10u);
}

TEST(PromptBuilder, ExactForTheBundledModel) {
  TANDEM_MODEL_PATH_OR_SKIP(path);
  const Loaded l = Load(path);
  auto builder = PromptBuilder::Create(l.tokenizer.get(), nullptr);
  ASSERT_TRUE(builder.ok());
  EXPECT_GT((*builder)->vocabulary_words(), 10000u);  // SmolLM2 has tens of thousands
  ExpectExact(l, false, {1, 2, 3, 17, 128, 1000, 4000, 8000});
  ExpectExact(l, true, {1, 40, 128, 1000, 4000});
}

}  // namespace
}  // namespace tandem::bench
