#include "text/unicode.h"

#include <algorithm>

namespace tandem::text {
namespace {

template <typename T>
bool SortedContains(const T* begin, size_t n, uint32_t cp) {
  return std::binary_search(begin, begin + n, cp);
}

uint32_t Cont(char c) { return static_cast<uint8_t>(c) & 0x3F; }
bool IsCont(char c) { return (static_cast<uint8_t>(c) & 0xC0) == 0x80; }

// Strict decoding after Unicode Table 3-7. On an ill-formed sequence, `size` is the length of
// its maximal subpart (at least 1) and `incomplete_at_end` tells whether it was only cut short
// by the end of `s`.
struct StrictDecoded {
  uint32_t cp = 0;
  uint32_t size = 1;
  bool valid = false;
  bool incomplete_at_end = false;
};

StrictDecoded DecodeStrict(std::string_view s, size_t pos) {
  StrictDecoded d;
  const uint8_t b0 = static_cast<uint8_t>(s[pos]);
  if (b0 < 0x80) {
    d.cp = b0;
    d.valid = true;
    return d;
  }
  uint32_t need;                 // continuation bytes
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the first continuation byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
    d.cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    d.cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    d.cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return d;  // 0x80..0xC1, 0xF5..0xFF never start a sequence
  }
  for (uint32_t i = 1; i <= need; ++i) {
    if (pos + i >= s.size()) {
      d.size = i;
      d.incomplete_at_end = true;
      return d;
    }
    const uint8_t b = static_cast<uint8_t>(s[pos + i]);
    const uint8_t min = i == 1 ? lo : 0x80;
    const uint8_t max = i == 1 ? hi : 0xBF;
    if (b < min || b > max) {
      d.size = i;
      return d;
    }
    d.cp = (d.cp << 6) | (b & 0x3F);
  }
  d.size = need + 1;
  d.valid = true;
  return d;
}

}  // namespace

UnicodeClass ClassOf(uint32_t cp) {
  if (cp > kMaxCodepoint) return UnicodeClass::kUnassigned;
  const uint32_t key = (cp << 3) | 7;
  const uint32_t* begin = internal::kCategoryRanges;
  const uint32_t* it = std::upper_bound(begin, begin + internal::kCategoryRangesSize, key);
  // kCategoryRanges[0] starts at 0, so `it` is past the first element.
  return static_cast<UnicodeClass>(*(it - 1) & 7);
}

bool IsWhiteSpace(uint32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  return SortedContains(internal::kWhiteSpace, internal::kWhiteSpaceSize, cp);
}

bool IsPythonWhitespace(uint32_t cp) {
  return SortedContains(internal::kPythonWhitespace, internal::kPythonWhitespaceSize, cp);
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | ((cp >> 18) & 0x07)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

DecodedCodepoint DecodeCodepointLenient(std::string_view s, size_t pos) {
  // llama.cpp (unicode_cpt_from_utf8) looks at the lead byte's high bits only and checks that
  // the continuation bytes are 10xxxxxx: overlong forms and surrogates pass. Values past
  // U+10FFFF (lead bytes 0xF4..0xF7) make llama.cpp abort; here they are invalid bytes.
  DecodedCodepoint d;
  d.cp = kReplacementCharacter;
  const uint8_t b0 = static_cast<uint8_t>(s[pos]);
  const size_t left = s.size() - pos;
  if (b0 < 0x80) {
    d.cp = b0;
    d.valid = true;
  } else if ((b0 & 0xE0) == 0xC0) {
    if (left >= 2 && IsCont(s[pos + 1])) {
      d = {((b0 & 0x1Fu) << 6) | Cont(s[pos + 1]), 2, true};
    }
  } else if ((b0 & 0xF0) == 0xE0) {
    if (left >= 3 && IsCont(s[pos + 1]) && IsCont(s[pos + 2])) {
      d = {((b0 & 0x0Fu) << 12) | (Cont(s[pos + 1]) << 6) | Cont(s[pos + 2]), 3, true};
    }
  } else if ((b0 & 0xF8) == 0xF0) {
    if (left >= 4 && IsCont(s[pos + 1]) && IsCont(s[pos + 2]) && IsCont(s[pos + 3])) {
      const uint32_t cp = ((b0 & 0x07u) << 18) | (Cont(s[pos + 1]) << 12) |
                          (Cont(s[pos + 2]) << 6) | Cont(s[pos + 3]);
      if (cp <= kMaxCodepoint) d = {cp, 4, true};
    }
  }
  return d;
}

bool IsValidUtf8(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    const StrictDecoded d = DecodeStrict(s, pos);
    if (!d.valid) return false;
    pos += d.size;
  }
  return true;
}

void AppendSanitizedUtf8(std::string_view s, std::string* out) {
  out->reserve(out->size() + s.size());
  size_t pos = 0;
  size_t run_start = 0;  // start of the current run of well-formed bytes
  while (pos < s.size()) {
    const StrictDecoded d = DecodeStrict(s, pos);
    if (!d.valid) {
      out->append(s.substr(run_start, pos - run_start));
      AppendUtf8(kReplacementCharacter, out);
      run_start = pos + d.size;
    }
    pos += d.size;
  }
  out->append(s.substr(run_start));
}

size_t IncompleteUtf8Tail(std::string_view s) {
  const size_t n = s.size();
  for (size_t k = 1; k <= 3 && k <= n; ++k) {
    const StrictDecoded d = DecodeStrict(s, n - k);
    if (d.incomplete_at_end && d.size == k) return k;
  }
  return 0;
}

std::string_view TrimPythonWhitespace(std::string_view s) {
  size_t first = s.size();  // start of the first non-whitespace code point
  size_t last_end = 0;      // end of the last non-whitespace code point
  size_t pos = 0;
  while (pos < s.size()) {
    const StrictDecoded d = DecodeStrict(s, pos);
    if (!(d.valid && IsPythonWhitespace(d.cp))) {
      if (first == s.size()) first = pos;
      last_end = pos + d.size;
    }
    pos += d.size;
  }
  if (first == s.size()) return s.substr(0, 0);
  return s.substr(first, last_end - first);
}

}  // namespace tandem::text
