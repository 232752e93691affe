// Streaming detokenization on a hand-made vocabulary (the goldens test repeats it on SmolLM2).
#include "text/detokenizer.h"

#include <random>

#include "gtest/gtest.h"
#include "text/unicode.h"
#include "unit/text/text_test_util.h"

namespace tandem::text {
namespace {

using testing::Bytes;
using testing::SmallVocab;

TEST(DetokenizerTest, EmojiSplitOverByteTokensIsEmittedWhenComplete) {
  auto t = SmallVocab({}).Build();
  IncrementalDetokenizer d(*t);
  EXPECT_EQ(d.Push('a'), "a");
  const std::vector<int32_t> smile = Bytes("\xf0\x9f\x98\x80");  // 😀
  EXPECT_EQ(d.Push(smile[0]), "");
  EXPECT_EQ(d.Push(smile[1]), "");
  EXPECT_EQ(d.pending_bytes(), 2u);
  EXPECT_EQ(d.Push(smile[2]), "");
  EXPECT_EQ(d.Push(smile[3]), "😀");
  EXPECT_EQ(d.pending_bytes(), 0u);
  EXPECT_EQ(d.Push('b'), "b");
  EXPECT_EQ(d.Flush(), "");
}

TEST(DetokenizerTest, IncompleteTailIsFlushedAsReplacementCharacter) {
  auto t = SmallVocab({}).Build();
  IncrementalDetokenizer d(*t);
  EXPECT_EQ(d.Push(0xE4), "");
  EXPECT_EQ(d.Push(0xBD), "");
  EXPECT_EQ(d.Flush(), "\xef\xbf\xbd");
  EXPECT_EQ(d.Push('x'), "x");  // usable again after Flush
}

TEST(DetokenizerTest, InvalidBytesDoNotBlockTheStream) {
  auto t = SmallVocab({}).Build();
  IncrementalDetokenizer d(*t);
  EXPECT_EQ(d.Push(0xFF), "\xef\xbf\xbd");
  EXPECT_EQ(d.Push(0xE4), "");
  EXPECT_EQ(d.Push('a'),
            "\xef\xbf\xbd"
            "a");  // the E4 can no longer complete
}

TEST(DetokenizerTest, MultiByteTokensAndSpecialTokens) {
  SmallVocab v({"\xe4\xbd\xa0\xe5", "\xa5\xbd!"});  // 你好! cut inside 好
  const int32_t end = v.AddSpecial("<|im_end|>", TokenType::kControl);
  auto t = v.Build();
  IncrementalDetokenizer plain(*t);
  EXPECT_EQ(plain.Push(256), "你");
  EXPECT_EQ(plain.Push(257), "好!");
  EXPECT_EQ(plain.Push(end), "");
  IncrementalDetokenizer special(*t, /*render_special=*/true);
  EXPECT_EQ(special.Push(end), "<|im_end|>");
}

TEST(DetokenizerTest, ConcatenationEqualsSanitizedDecode) {
  SmallVocab v({"\xe4\xbd\xa0\xe5", "\xa5\xbd!", "\xf0\x9f", "\x98\x80\xf0"});
  auto t = v.Build();
  std::mt19937 rng(7);
  for (int round = 0; round < 500; ++round) {
    std::vector<int32_t> ids(rng() % 30);
    for (int32_t& id : ids) {
      // Mostly well-formed pieces, sometimes a random byte or an out-of-range id.
      const uint32_t r = rng() % 10;
      id = r < 6   ? static_cast<int32_t>(256 + rng() % 4)
           : r < 9 ? static_cast<int32_t>(rng() % 256)
                   : 99999;
    }
    IncrementalDetokenizer d(*t);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string out = d.Push(id);
      ASSERT_TRUE(IsValidUtf8(out)) << testing::Escaped(out);
      streamed += out;
    }
    streamed += d.Flush();
    EXPECT_EQ(streamed, SanitizeUtf8(t->Decode(ids, false)));
  }
}

}  // namespace
}  // namespace tandem::text
