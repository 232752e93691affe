// Stop strings over streamed text: every way of cutting the text into pieces must show the
// same text, never any part of the stop string, and never half a character.
#include "text/stop_strings.h"

#include <random>

#include "gtest/gtest.h"
#include "text/unicode.h"
#include "unit/text/text_test_util.h"

namespace tandem::text {
namespace {

using testing::Escaped;

StopStringMatcher Make(std::vector<std::string> stops) {
  auto m = StopStringMatcher::Create(std::move(stops));
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

// What a client must see: the text up to the stop string that is complete first (the
// longest of those completing at the same byte), or all of it.
struct Expected {
  std::string shown;
  bool stopped = false;
};
Expected Reference(std::string_view text, const std::vector<std::string>& stops) {
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t best_len = 0;
    for (const std::string& s : stops) {
      if (s.size() <= end && text.substr(end - s.size(), s.size()) == s) {
        best_len = std::max(best_len, s.size());
      }
    }
    if (best_len > 0) return {std::string(text.substr(0, end - best_len)), true};
  }
  return {std::string(text), false};
}

// Streams `text` cut at the positions whose bit is set in `cuts` (bit i: a cut after byte i).
std::string Stream(std::string_view text, uint64_t cuts, const std::vector<std::string>& stops,
                   bool* stopped, bool* well_formed) {
  StopStringMatcher m = Make(stops);
  std::string shown;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (i + 1 == text.size() || (cuts >> i) & 1) {
      const std::string out = m.Push(text.substr(start, i + 1 - start));
      *well_formed &= IsValidUtf8(out);
      shown += out;
      start = i + 1;
    }
  }
  const std::string rest = m.Flush();
  *well_formed &= IsValidUtf8(rest);
  shown += rest;
  *stopped = m.stopped();
  return shown;
}

// Every one of the 2^(n-1) ways to cut `text` (n <= 16) gives the reference result.
void ExpectAllSplits(std::string_view text, const std::vector<std::string>& stops) {
  ASSERT_LE(text.size(), 16u);
  const Expected want = Reference(text, stops);
  const uint64_t n_splits = text.empty() ? 1 : (uint64_t{1} << (text.size() - 1));
  for (uint64_t cuts = 0; cuts < n_splits; ++cuts) {
    bool stopped = false, well_formed = true;
    const std::string got = Stream(text, cuts, stops, &stopped, &well_formed);
    ASSERT_EQ(got, want.shown) << "text " << Escaped(text) << " cuts " << cuts;
    ASSERT_EQ(stopped, want.stopped) << "text " << Escaped(text) << " cuts " << cuts;
    if (IsValidUtf8(text)) {
      ASSERT_TRUE(well_formed) << Escaped(text) << " cuts " << cuts;
    }
  }
}

TEST(StopStringsTest, StopSpanningPiecesIsNeverShown) {
  StopStringMatcher m = Make({"world"});
  EXPECT_EQ(m.Push("hello wor"), "hello ");  // "wor" could start "world": held back
  EXPECT_EQ(m.held_bytes(), 3u);
  EXPECT_EQ(m.Push("ld and more"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.matched_stop(), "world");
  EXPECT_EQ(m.Push("after"), "");
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopStringsTest, DisarmedStopsAreShownAndArmedOnesStop) {
  StopStringMatcher m = Make({"ab"});
  m.set_armed(false);
  EXPECT_EQ(m.Push("xab"), "xab");
  EXPECT_EQ(m.Push("a"), "");  // still held: it may begin a stop that completes once armed
  m.set_armed(true);
  EXPECT_EQ(m.Push("b!"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopStringsTest, HeldTextIsReleasedOnceRuledOut) {
  StopStringMatcher m = Make({"world"});
  EXPECT_EQ(m.Push("hello wor"), "hello ");
  EXPECT_EQ(m.Push("m"), "worm");
  EXPECT_EQ(m.Push("s wo"), "s ");
  EXPECT_EQ(m.Flush(), "wo");  // the stream ended without the stop: show everything
  EXPECT_FALSE(m.stopped());
}

TEST(StopStringsTest, TextBeforeTheStopInTheSamePieceIsShown) {
  StopStringMatcher m = Make({"\n\n"});
  EXPECT_EQ(m.Push("line one\n\nline two"), "line one");
  EXPECT_TRUE(m.stopped());
}

TEST(StopStringsTest, StopAtTheVeryStartShowsNothing) {
  StopStringMatcher m = Make({"Q:"});
  EXPECT_EQ(m.Push("Q"), "");
  EXPECT_EQ(m.Push(":"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopStringsTest, OverlappingPrefixesTheFirstCompleteStopWins) {
  // "ab" completes before "abc" could: the text stops at the first "ab".
  ExpectAllSplits("aabcd", {"ab", "abc"});
  ExpectAllSplits("aabcd", {"abc", "ab"});
  EXPECT_EQ(Reference("aabcd", {"abc", "ab"}).shown, "a");
  // "bc" ends before "abcd" does.
  ExpectAllSplits("xabcd", {"abcd", "bc"});
  EXPECT_EQ(Reference("xabcd", {"abcd", "bc"}).shown, "xa");
  // Stops ending at the same byte: the longer one starts earlier and wins.
  ExpectAllSplits("xxabc", {"bc", "abc"});
  EXPECT_EQ(Reference("xxabc", {"bc", "abc"}).shown, "xx");
}

TEST(StopStringsTest, SelfOverlappingStopsNeedTheFailureFunction) {
  ExpectAllSplits("aaab", {"aab"});
  ExpectAllSplits("abababc", {"ababc"});
  ExpectAllSplits("aabaabaaab", {"aabaaab"});
  ExpectAllSplits("abcabcabd", {"abcabd", "cab"});
  ExpectAllSplits("ababab", {"abac"});  // never matches: everything is shown
}

TEST(StopStringsTest, MultiByteCharactersAreNeverSplit) {
  ExpectAllSplits("caf\xc3\xa9!", {"\xc3\xa9!"});                  // café! stop "é!"
  ExpectAllSplits("a\xf0\x9f\x98\x80\xf0\x9f\x98\x80!b", {"\xf0\x9f\x98\x80!"});  // 😀😀!
  // 你好吗 against the stop 好你: a shared prefix, no match.
  ExpectAllSplits("\xe4\xbd\xa0\xe5\xa5\xbd\xe5\x90\x97", {"\xe5\xa5\xbd\xe4\xbd\xa0"});
  ExpectAllSplits("\xe4\xbd\xa0\xe5\xa5\xbd", {});                 // no stops: whole characters
}

TEST(StopStringsTest, PieceEndingInsideACharacterWaitsForTheRest) {
  StopStringMatcher m = Make({"zz"});
  EXPECT_EQ(m.Push("a\xf0\x9f"), "a");
  EXPECT_EQ(m.Push("\x98"), "");
  EXPECT_EQ(m.Push("\x80z"), "\xf0\x9f\x98\x80");  // 😀, the "z" is held
  EXPECT_EQ(m.Flush(), "z");
}

TEST(StopStringsTest, RandomTextsAndStopsMatchTheReferenceForEverySplit) {
  std::mt19937 rng(1234);
  const std::vector<std::string> alphabet = {"a", "b", "c", "\xc3\xa9", "\xe2\x82\xac"};
  auto random_string = [&](int max_chars, size_t max_bytes) {
    std::string s;
    const int n = 1 + static_cast<int>(rng() % max_chars);
    for (int i = 0; i < n; ++i) {
      const std::string& c = alphabet[rng() % alphabet.size()];
      if (s.size() + c.size() > max_bytes) break;
      s += c;
    }
    return s.empty() ? std::string("a") : s;
  };
  for (int round = 0; round < 300; ++round) {
    std::vector<std::string> stops(rng() % 4);
    for (std::string& s : stops) s = random_string(4, 8);
    ExpectAllSplits(random_string(12, 12), stops);
  }
}

TEST(StopStringsTest, LongTextStaysLinearAndHoldsLittle) {
  StopStringMatcher m = Make({"aaaaaaab", "stop"});
  std::string shown;
  for (int i = 0; i < 200000; ++i) {
    shown += m.Push("a");
    ASSERT_LE(m.held_bytes(), 7u);
  }
  shown += m.Push("aaab");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(shown.size(), 200000u + 3 - 7);
}

TEST(StopStringsTest, EmptyOrIllFormedStopsAreRejected) {
  EXPECT_EQ(StopStringMatcher::Create({"ok", ""}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StopStringMatcher::Create({"\xe4\xbd"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(StopStringMatcher::Create({}).ok());
}

}  // namespace
}  // namespace tandem::text
