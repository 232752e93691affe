// SentencePiece ("llama") vocabularies on small hand-made vocabularies: merges by score, byte
// fallback, the space prefix, and pieces that render spaces (tokenizer_goldens and
// synth_fidelity check against llama.cpp on whole vocabularies).
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "text/tokenizer.h"

namespace tandem::text {
namespace {

using ::testing::ElementsAre;

constexpr const char* kSp = "\xe2\x96\x81";  // U+2581

// <unk> <s> </s>, <0x00>..<0xFF> (ids 3..258), then `pieces` with their scores (ids 259...).
struct SpmVocab {
  TokenizerConfig config;
  explicit SpmVocab(const std::vector<std::pair<std::string, float>>& pieces) {
    config.model = "llama";
    config.tokens = {"<unk>", "<s>", "</s>"};
    config.token_types = {2, 3, 3};
    config.scores = {0, 0, 0};
    for (int b = 0; b < 256; ++b) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "<0x%02X>", b);
      config.tokens.push_back(hex);
      config.token_types.push_back(6);
      config.scores.push_back(0);
    }
    for (const auto& [text, score] : pieces) {
      std::string t;
      for (char c : text) t += c == ' ' ? std::string(kSp) : std::string(1, c);
      config.tokens.push_back(t);
      config.token_types.push_back(1);
      config.scores.push_back(score);
    }
    config.unk_id = 0;
    config.bos_id = 1;
    config.eos_id = 2;
  }
  std::unique_ptr<Tokenizer> Build() const {
    auto t = Tokenizer::Create(config);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(*t) : nullptr;
  }
};

constexpr int32_t kPiece = 259;
int32_t Byte(uint8_t b) { return 3 + b; }

TEST(SpmTokenizerTest, HighestScoringPairMergesFirst) {
  // " abc": "bc" outscores "ab", so "▁a" + "bc", not "▁ab" + "c".
  SpmVocab v({{" ", -10}, {"a", -10}, {"b", -10}, {"c", -10}, {" a", -1}, {"ab", -3}, {"bc", -2}});
  auto t = v.Build();
  EXPECT_THAT(t->Encode("abc", false, false), ElementsAre(kPiece + 4, kPiece + 6));
  // With "ab" the better pair, the other split.
  v.config.scores[kPiece + 5] = -0.5f;
  EXPECT_THAT(v.Build()->Encode("abc", false, false), ElementsAre(kPiece, kPiece + 5, kPiece + 3));
}

TEST(SpmTokenizerTest, EqualScoresMergeLeftmostFirst) {
  SpmVocab v({{" ", -10}, {"a", -10}, {"aa", -1}});
  // "▁aaa": the leftmost "aa" merges first; "▁" and the last "a" stay.
  EXPECT_THAT(v.Build()->Encode("aaa", false, false), ElementsAre(kPiece, kPiece + 2, kPiece + 1));
}

TEST(SpmTokenizerTest, CharactersOutsideTheVocabularyFallBackToBytes) {
  SpmVocab v({{" ", -10}, {"a", -10}});
  EXPECT_THAT(v.Build()->Encode("a\xc3\xa9", false, false),
              ElementsAre(kPiece, kPiece + 1, Byte(0xC3), Byte(0xA9)));
}

TEST(SpmTokenizerTest, SpacePrefixAtTheStartAndAfterSpecialTokensOnly) {
  SpmVocab v({{" ", -10}, {"a", -10}, {" a", -1}});
  auto t = v.Build();
  const int32_t sp_a = kPiece + 2;
  EXPECT_THAT(t->Encode("a a", false, false), ElementsAre(sp_a, sp_a));
  EXPECT_THAT(t->Encode("a</s>a", false, true), ElementsAre(sp_a, 2, sp_a));
  EXPECT_THAT(t->Encode("a</s>a", false, false), ElementsAre(sp_a, Byte('<'), Byte('/'), Byte('s'), Byte('>'), kPiece + 1));
  v.config.add_space_prefix = false;
  EXPECT_THAT(v.Build()->Encode("a a", false, false), ElementsAre(kPiece + 1, sp_a));
}

TEST(SpmTokenizerTest, PiecesRenderSpacesAndBytes) {
  SpmVocab v({{" ", -10}, {"a", -10}, {" a", -1}});
  auto t = v.Build();
  EXPECT_EQ(t->TokenToPiece(kPiece + 2, false), " a");
  EXPECT_EQ(t->TokenToPiece(Byte(0xC3), false), "\xc3");
  EXPECT_EQ(t->TokenToPiece(1, false), "");
  EXPECT_EQ(t->TokenToPiece(1, true), "<s>");
  const std::string text = "a \xc3\xa9 a\n\xff";
  EXPECT_EQ(t->Decode(t->Encode(text, false, false), false), " " + text);  // the prefix space
  for (int b = 0; b < 256; ++b) EXPECT_TRUE(t->HasByteToken(static_cast<uint8_t>(b)));
}

TEST(SpmTokenizerTest, LongInputsAreFast) {
  SpmVocab v({{" ", -10}, {"a", -10}, {"aa", -1}, {"aaaa", -2}});
  const std::string text(200000, 'a');
  const std::vector<int32_t> ids = v.Build()->Encode(text, false, false);
  EXPECT_EQ(ids.size(), 1u + 50000u);  // "▁" then 50,000 x "aaaa"
}

TEST(SpmTokenizerTest, ScoresShorterThanTheVocabularyAreAnError) {
  SpmVocab v({{"a", -1}});
  v.config.scores.pop_back();
  EXPECT_EQ(Tokenizer::Create(v.config).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tandem::text
