// UTF-8 and Unicode helpers for the tokenizer, chat templates and detokenizer.
//
// Two decoders on purpose:
//  * DecodeCodepointLenient() decodes possibly-invalid input exactly the way llama.cpp's
//    tokenizer does (unicode_cpts_from_utf8), so that pre-tokenization splits ill-formed text
//    where llama.cpp does. It accepts overlong forms and UTF-8-encoded surrogates; a byte that
//    does not start a sequence (or starts a truncated one, or one past U+10FFFF) is one invalid
//    code point of one byte.
//  * The strict functions (AppendSanitizedUtf8, IncompleteUtf8Tail) follow the Unicode
//    standard's well-formed byte sequences (Table 3-7) and are used for text handed to clients.
//
// All functions are pure and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "text/unicode_tables.h"

namespace tandem::text {

inline constexpr uint32_t kReplacementCharacter = 0xFFFD;
inline constexpr uint32_t kMaxCodepoint = 0x10FFFF;

// General category class of `cp` (kUnassigned above U+10FFFF).
UnicodeClass ClassOf(uint32_t cp);
inline bool IsLetter(uint32_t cp) { return ClassOf(cp) == UnicodeClass::kLetter; }
inline bool IsNumber(uint32_t cp) { return ClassOf(cp) == UnicodeClass::kNumber; }
// The White_Space property: what llama.cpp's pre-tokenizer regexes call `\s`.
bool IsWhiteSpace(uint32_t cp);
// Python's str.isspace(): what Jinja's `trim` filter strips (White_Space plus U+001C..U+001F).
bool IsPythonWhitespace(uint32_t cp);

// Appends the UTF-8 form of `cp` (<= U+10FFFF; surrogates get their 3-byte form, as llama.cpp
// writes them).
void AppendUtf8(uint32_t cp, std::string* out);

struct DecodedCodepoint {
  uint32_t cp = 0;     // kReplacementCharacter when !valid
  uint32_t size = 1;   // bytes consumed, >= 1
  bool valid = false;  // false: one byte that llama.cpp turns into U+FFFD
};
// Decodes the code point at s[pos] (pos < s.size()) the way llama.cpp's tokenizer does.
DecodedCodepoint DecodeCodepointLenient(std::string_view s, size_t pos);

// True when `s` is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF).
bool IsValidUtf8(std::string_view s);
// Appends `s` with every ill-formed part replaced by U+FFFD, one per maximal subpart (the
// Unicode recommendation; Python's errors="replace" does the same).
void AppendSanitizedUtf8(std::string_view s, std::string* out);
inline std::string SanitizeUtf8(std::string_view s) {
  std::string out;
  AppendSanitizedUtf8(s, &out);
  return out;
}
// The number of bytes at the end of `s` (0..3) that are the start of a well-formed sequence
// still missing bytes: what a streaming decoder must hold back.
size_t IncompleteUtf8Tail(std::string_view s);

// Removes leading and trailing IsPythonWhitespace code points (Jinja's `trim`). Invalid bytes
// are kept.
std::string_view TrimPythonWhitespace(std::string_view s);

}  // namespace tandem::text
