// Unicode tables, UTF-8 decoding/sanitizing and the byte-level alphabet.
#include "text/unicode.h"

#include "gtest/gtest.h"
#include "text/byte_level.h"

namespace tandem::text {
namespace {

TEST(TokenizerUnicodeTest, CategoriesMatchUnicode15) {
  EXPECT_EQ(ClassOf('a'), UnicodeClass::kLetter);
  EXPECT_EQ(ClassOf(0x00E9), UnicodeClass::kLetter);   // é
  EXPECT_EQ(ClassOf(0x4E2D), UnicodeClass::kLetter);   // 中
  EXPECT_EQ(ClassOf(0x2EBF0), UnicodeClass::kLetter);  // CJK Extension I (Unicode 15.1)
  EXPECT_EQ(ClassOf(0x11F04), UnicodeClass::kLetter);  // Kawi (Unicode 15.0)
  EXPECT_EQ(ClassOf('7'), UnicodeClass::kNumber);
  EXPECT_EQ(ClassOf(0x00B2), UnicodeClass::kNumber);  // ²
  EXPECT_EQ(ClassOf(0x0663), UnicodeClass::kNumber);  // Arabic-Indic 3
  EXPECT_EQ(ClassOf(0x216B), UnicodeClass::kNumber);  // Ⅻ
  EXPECT_EQ(ClassOf(0x0301), UnicodeClass::kMark);
  EXPECT_EQ(ClassOf('!'), UnicodeClass::kPunctuation);
  EXPECT_EQ(ClassOf('$'), UnicodeClass::kSymbol);
  EXPECT_EQ(ClassOf(0x1F600), UnicodeClass::kSymbol);  // 😀
  EXPECT_EQ(ClassOf(' '), UnicodeClass::kSeparator);
  EXPECT_EQ(ClassOf(0x200B), UnicodeClass::kControl);  // ZERO WIDTH SPACE is Cf
  EXPECT_EQ(ClassOf(0xD800), UnicodeClass::kControl);  // surrogate
  EXPECT_EQ(ClassOf(0x0378), UnicodeClass::kUnassigned);
  EXPECT_EQ(ClassOf(0x10D40), UnicodeClass::kUnassigned);  // Garay: Unicode 16, not in 15.1
  EXPECT_EQ(ClassOf(0x10FFFF), UnicodeClass::kUnassigned);
  EXPECT_EQ(ClassOf(0x110000), UnicodeClass::kUnassigned);
}

TEST(TokenizerUnicodeTest, WhiteSpaceIsTheUnicodeProperty) {
  for (uint32_t cp : {0x09u, 0x0Au, 0x0Bu, 0x0Cu, 0x0Du, 0x20u, 0x85u, 0xA0u, 0x1680u, 0x2000u,
                      0x200Au, 0x2028u, 0x2029u, 0x202Fu, 0x205Fu, 0x3000u}) {
    EXPECT_TRUE(IsWhiteSpace(cp)) << cp;
  }
  for (uint32_t cp : {0x1Cu, 0x1Fu, 0x200Bu, 0x180Eu, 0xFEFFu, 0x61u, 0u}) {
    EXPECT_FALSE(IsWhiteSpace(cp)) << cp;
  }
  EXPECT_TRUE(IsPythonWhitespace(0x1C));  // str.isspace() differs from \s here
  EXPECT_FALSE(IsPythonWhitespace(0x200B));
}

TEST(TokenizerUnicodeTest, LenientDecodingFollowsLlamaCpp) {
  auto dec = [](std::string_view s) { return DecodeCodepointLenient(s, 0); };
  EXPECT_EQ(dec("\xc3\xa9").cp, 0xE9u);
  EXPECT_EQ(dec("\xf0\x9f\x98\x80").cp, 0x1F600u);
  EXPECT_EQ(dec("\xf0\x9f\x98\x80").size, 4u);
  EXPECT_EQ(dec("\xc0\x80").cp, 0u);  // overlong accepted
  EXPECT_TRUE(dec("\xc0\x80").valid);
  EXPECT_EQ(dec("\xed\xa0\x80").cp, 0xD800u);  // surrogate accepted
  for (std::string_view bad :
       {"\x80", "\xff", "\xc3", "\xc3(", "\xe2\x82", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80"}) {
    const DecodedCodepoint d = dec(bad);
    EXPECT_FALSE(d.valid);
    EXPECT_EQ(d.cp, kReplacementCharacter);
    EXPECT_EQ(d.size, 1u);
  }
}

TEST(TokenizerUnicodeTest, SanitizeReplacesMaximalSubparts) {
  EXPECT_EQ(SanitizeUtf8("héllo 😀"), "héllo 😀");
  EXPECT_EQ(SanitizeUtf8("a\xff"
                         "b"),
            "a\xef\xbf\xbd"
            "b");
  // Python: b"\xe2\x82(".decode(errors="replace") == "\ufffd(" (one U+FFFD for E2 82).
  EXPECT_EQ(SanitizeUtf8("\xe2\x82("), "\xef\xbf\xbd(");
  EXPECT_EQ(SanitizeUtf8("\xc0\x80"), "\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(SanitizeUtf8("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(SanitizeUtf8("\xf0\x9f\x98"), "\xef\xbf\xbd");
  EXPECT_TRUE(IsValidUtf8("中文 😀"));
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));
}

TEST(TokenizerUnicodeTest, IncompleteTailIsHeldBack) {
  EXPECT_EQ(IncompleteUtf8Tail(""), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("abc"), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("a\xf0"), 1u);
  EXPECT_EQ(IncompleteUtf8Tail("a\xf0\x9f"), 2u);
  EXPECT_EQ(IncompleteUtf8Tail("a\xf0\x9f\x98"), 3u);
  EXPECT_EQ(IncompleteUtf8Tail("a\xf0\x9f\x98\x80"), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("\xe2\x82"), 2u);
  EXPECT_EQ(IncompleteUtf8Tail("\xed\xa0"), 0u);  // would be a surrogate: never completes
  EXPECT_EQ(IncompleteUtf8Tail("\x80"), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("\xff"), 0u);
}

TEST(TokenizerUnicodeTest, TrimStripsPythonWhitespace) {
  EXPECT_EQ(TrimPythonWhitespace("  a b \n\t"), "a b");
  EXPECT_EQ(TrimPythonWhitespace("\u3000\u00a0x\x1c"), "x");
  EXPECT_EQ(TrimPythonWhitespace(" \u200bx"), "\u200bx");
  EXPECT_EQ(TrimPythonWhitespace(" \t "), "");
  EXPECT_EQ(TrimPythonWhitespace(""), "");
}

TEST(TokenizerUnicodeTest, ByteLevelAlphabetIsGpt2s) {
  EXPECT_EQ(ByteLevelEncode(" "), "Ġ");
  EXPECT_EQ(ByteLevelEncode("\n"), "Ċ");
  EXPECT_EQ(ByteLevelEncode("a!~"), "a!~");
  EXPECT_EQ(ByteLevelEncode(std::string(1, '\0')), "Ā");
  EXPECT_EQ(ByteLevelEncode("\xad"), "Ń");  // the last stand-in, U+0143
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(ByteLevelDecode(ByteLevelEncode(all)), all);
  EXPECT_EQ(ByteLevelDecode("€"), std::nullopt);         // not in the alphabet
  EXPECT_EQ(ByteLevelDecode("\xc1\x81"), std::nullopt);  // overlong "A"
  EXPECT_EQ(ByteLevelDecode(" "), std::nullopt);         // a raw space is never in the alphabet
}

}  // namespace
}  // namespace tandem::text
