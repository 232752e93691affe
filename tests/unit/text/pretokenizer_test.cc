// Pre-tokenizer splits on hand-picked examples (tokenizer_goldens_test.cc checks ~480 more
// against llama.cpp's own splits).
#include "text/pretokenizer.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "text/unicode.h"

namespace tandem::text {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Words(PreTokenizerType type, std::string_view text) {
  std::vector<uint32_t> cps;
  std::vector<size_t> offsets;
  for (size_t pos = 0; pos < text.size();) {
    const DecodedCodepoint d = DecodeCodepointLenient(text, pos);
    cps.push_back(d.cp);
    offsets.push_back(pos);
    pos += d.size;
  }
  offsets.push_back(text.size());
  std::vector<std::string> words;
  size_t begin = 0;
  for (uint32_t len : PreTokenize(type, cps)) {
    words.emplace_back(text.substr(offsets[begin], offsets[begin + len] - offsets[begin]));
    begin += len;
  }
  return words;
}

constexpr PreTokenizerType kGpt2 = PreTokenizerType::kGpt2;
constexpr PreTokenizerType kSmolLm = PreTokenizerType::kSmolLm;
constexpr PreTokenizerType kLlama3 = PreTokenizerType::kLlama3;
constexpr PreTokenizerType kQwen2 = PreTokenizerType::kQwen2;
constexpr PreTokenizerType kDefault = PreTokenizerType::kDefault;

TEST(TokenizerPreTokenizerTest, Gpt2) {
  EXPECT_THAT(Words(kGpt2, "Hello world"), ElementsAre("Hello", " world"));
  EXPECT_THAT(Words(kGpt2, "I'm here, isn't it?"),
              ElementsAre("I", "'m", " here", ",", " isn", "'t", " it", "?"));
  EXPECT_THAT(Words(kGpt2, "it'S"), ElementsAre("it", "'", "S"));    // case-sensitive
  EXPECT_THAT(Words(kGpt2, "a   b"), ElementsAre("a", "  ", " b"));  // \s+(?!\S)
  EXPECT_THAT(Words(kGpt2, "a \n"), ElementsAre("a", " \n"));
  EXPECT_THAT(Words(kGpt2, "x 123 45"), ElementsAre("x", " 123", " 45"));
  EXPECT_THAT(Words(kGpt2, " !!?x"), ElementsAre(" !!?", "x"));
  EXPECT_THAT(Words(kGpt2, "中文 😀😀"), ElementsAre("中文", " 😀😀"));
  EXPECT_THAT(Words(kGpt2, "a\u00a0b"), ElementsAre("a", "\u00a0", "b"));  // NBSP is \s
  EXPECT_THAT(Words(kGpt2, ""), ElementsAre());
}

TEST(TokenizerPreTokenizerTest, SmolLmSplitsEveryDigit) {
  EXPECT_THAT(Words(kSmolLm, "x 123"), ElementsAre("x", " ", "1", "2", "3"));
  EXPECT_THAT(Words(kSmolLm, "a1b"), ElementsAre("a", "1", "b"));
  EXPECT_THAT(Words(kSmolLm, "²½"), ElementsAre("²", "½"));
  EXPECT_THAT(Words(kSmolLm, "Hello world"), ElementsAre("Hello", " world"));
}

TEST(TokenizerPreTokenizerTest, Llama3) {
  EXPECT_THAT(Words(kLlama3, "Hello world"), ElementsAre("Hello", " world"));
  EXPECT_THAT(Words(kLlama3, "IT'S"), ElementsAre("IT", "'S"));  // case-insensitive
  EXPECT_THAT(Words(kLlama3, "1234567"), ElementsAre("123", "456", "7"));
  EXPECT_THAT(Words(kLlama3, " 12"), ElementsAre(" ", "12"));
  EXPECT_THAT(Words(kLlama3, "(hello"), ElementsAre("(hello"));  // [^\r\n\p{L}\p{N}]?\p{L}+
  EXPECT_THAT(Words(kLlama3, "a.\n\nb"), ElementsAre("a", ".\n\n", "b"));
  EXPECT_THAT(Words(kLlama3, "a \n\n  b"), ElementsAre("a", " \n\n", " ", " b"));
}

// Qwen2's regex is Llama 3's with \p{N} for \p{N}{1,3}: every digit alone, the rest the same.
TEST(TokenizerPreTokenizerTest, Qwen2SplitsEveryDigitAndOtherwiseSplitsAsLlama3) {
  EXPECT_THAT(Words(kQwen2, "1234567"), ElementsAre("1", "2", "3", "4", "5", "6", "7"));
  EXPECT_THAT(Words(kQwen2, "x ²12"), ElementsAre("x", " ", "²", "1", "2"));
  for (std::string_view text : {"Hello world", "IT'S", "(hello", "a.\n\nb", "a \n\n  b", "don't stop!\r\n"}) {
    EXPECT_EQ(Words(kQwen2, text), Words(kLlama3, text)) << text;
  }
}

TEST(TokenizerPreTokenizerTest, Default) {
  EXPECT_THAT(Words(kDefault, "don't"), ElementsAre("don", "'", "t"));  // punctuation first
  EXPECT_THAT(Words(kDefault, "x 12345"), ElementsAre("x", " ", "123", "45"));
  EXPECT_THAT(Words(kDefault, "a+=b"), ElementsAre("a", "+=", "b"));
}

TEST(TokenizerPreTokenizerTest, WordsCoverTheInput) {
  const std::string text = "Mixed: 12 中文, émoji 😀\r\n\t  end's \xff\xfe tail  ";
  for (PreTokenizerType t : {kGpt2, kSmolLm, kLlama3, kQwen2, kDefault}) {
    std::string joined;
    for (const std::string& w : Words(t, text)) {
      EXPECT_FALSE(w.empty());
      joined += w;
    }
    EXPECT_EQ(joined, text);
  }
}

TEST(TokenizerPreTokenizerTest, LongInputsAreLinear) {
  // 200k code points through every pre-tokenizer: quadratic scanning would take minutes.
  const std::string text(200000, ' ');
  for (PreTokenizerType t : {kGpt2, kSmolLm, kLlama3, kQwen2, kDefault}) {
    EXPECT_EQ(Words(t, text).size(), 1u);
  }
}

TEST(TokenizerPreTokenizerTest, LookupByName) {
  EXPECT_EQ(LookupPreTokenizer("smollm")->type, kSmolLm);
  EXPECT_EQ(LookupPreTokenizer("gpt-2")->type, kGpt2);
  EXPECT_EQ(LookupPreTokenizer("gpt2")->type, kGpt2);
  EXPECT_EQ(LookupPreTokenizer("")->type, kDefault);
  EXPECT_EQ(LookupPreTokenizer("default")->type, kDefault);
  auto llama = LookupPreTokenizer("llama-bpe");
  EXPECT_EQ(llama->type, kLlama3);
  EXPECT_TRUE(llama->ignore_merges);
  EXPECT_TRUE(llama->default_add_bos);
  for (std::string_view name : {"qwen2", "deepseek-r1-qwen"}) {
    auto qwen = LookupPreTokenizer(name);
    ASSERT_TRUE(qwen.ok()) << name;
    EXPECT_EQ(qwen->type, kQwen2);
    EXPECT_FALSE(qwen->ignore_merges);
    EXPECT_FALSE(qwen->default_add_bos);
  }
  auto bad = LookupPreTokenizer("qwen35");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("'qwen35'"));
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr(SupportedPreTokenizerNames()));
}

}  // namespace
}  // namespace tandem::text
