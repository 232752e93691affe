// Generated Unicode tables (src/text/unicode_tables.cc, made by
// tools/goldens/tokenizer_gen_unicode_tables.py from Unicode 15.1, the version of llama.cpp's
// tables). Internal to src/text/; use the lookups in text/unicode.h.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tandem::text {

// The General_Category of a code point, by its first letter; unassigned (Cn) apart.
enum class UnicodeClass : uint8_t {
  kUnassigned = 0,
  kLetter = 1,       // \p{L}
  kNumber = 2,       // \p{N}
  kMark = 3,         // \p{M}
  kPunctuation = 4,  // \p{P}
  kSymbol = 5,       // \p{S}
  kSeparator = 6,    // \p{Z}
  kControl = 7,      // \p{C} other than Cn: Cc, Cf, Cs, Co
};

namespace internal {

// Sorted range starts packed as (first code point << 3) | UnicodeClass; a range lasts until
// the next start; the first starts at 0 and the table covers 0..0x10FFFF.
extern const uint32_t kCategoryRanges[];
extern const size_t kCategoryRangesSize;
// The White_Space property, sorted: llama.cpp's `\s`.
extern const uint32_t kWhiteSpace[];
extern const size_t kWhiteSpaceSize;
// Python's str.isspace(), sorted: what Jinja's `trim` strips.
extern const uint32_t kPythonWhitespace[];
extern const size_t kPythonWhitespaceSize;

}  // namespace internal
}  // namespace tandem::text
