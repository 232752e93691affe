#include "text/pretokenizer.h"

#include <array>

#include "common/strings.h"
#include "text/unicode.h"

namespace tandem::text {
namespace {

struct NamedPreTokenizer {
  std::string_view name;
  PreTokenizerInfo info;
};

// The names llama.cpp maps to these four splits (llama-vocab.cpp, llama_vocab::impl::load).
// "gpt2" is accepted as an alias of llama.cpp's "gpt-2".
constexpr std::array<NamedPreTokenizer, 22> kPreTokenizers = {{
    {"default", {PreTokenizerType::kDefault, false, false}},
    {"gpt-2", {PreTokenizerType::kGpt2, false, false}},
    {"gpt2", {PreTokenizerType::kGpt2, false, false}},
    {"phi-2", {PreTokenizerType::kGpt2, false, false}},
    {"mpt", {PreTokenizerType::kGpt2, false, false}},
    {"olmo", {PreTokenizerType::kGpt2, false, false}},
    {"jais", {PreTokenizerType::kGpt2, false, false}},
    {"smollm", {PreTokenizerType::kSmolLm, false, false}},
    {"starcoder", {PreTokenizerType::kSmolLm, false, false}},
    {"refact", {PreTokenizerType::kSmolLm, false, false}},
    {"command-r", {PreTokenizerType::kSmolLm, false, false}},
    {"codeshell", {PreTokenizerType::kSmolLm, false, false}},
    {"llama3", {PreTokenizerType::kLlama3, true, true}},
    {"llama-v3", {PreTokenizerType::kLlama3, true, true}},
    {"llama-bpe", {PreTokenizerType::kLlama3, true, true}},
    {"falcon3", {PreTokenizerType::kLlama3, true, true}},
    {"pixtral", {PreTokenizerType::kLlama3, true, true}},
    {"lfm2", {PreTokenizerType::kLlama3, true, true}},
    {"qwen2", {PreTokenizerType::kQwen2, false, false}},
    {"deepseek-r1-qwen", {PreTokenizerType::kQwen2, false, false}},
    {"stablelm2", {PreTokenizerType::kQwen2, false, false}},
    {"megrez", {PreTokenizerType::kQwen2, false, false}},
}};

// Per-code-point properties the scanners test.
enum : uint8_t {
  kL = 1,           // \p{L}
  kN = 2,           // \p{N}
  kWs = 4,          // \s
  kPunctClass = 8,  // [\p{P}$+<=>^~|] of the default pre-tokenizer
  kDigit = 16,      // [0-9]
};

uint8_t FlagsOf(uint32_t cp) {
  if (cp < 0x80) {
    uint8_t f = 0;
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) f |= kL;
    if (cp >= '0' && cp <= '9') f |= kN | kDigit;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) f |= kWs;
    // ASCII \p{P} plus $+<=>^~| (everything printable but letters, digits and the backtick).
    if (cp >= 0x21 && cp <= 0x7E && !(f & (kL | kN)) && cp != '`') f |= kPunctClass;
    return f;
  }
  if (IsWhiteSpace(cp)) return kWs;
  switch (ClassOf(cp)) {
    case UnicodeClass::kLetter:
      return kL;
    case UnicodeClass::kNumber:
      return kN;
    case UnicodeClass::kPunctuation:
      return kPunctClass;
    default:
      return 0;
  }
}

uint32_t AsciiLower(uint32_t cp) { return cp >= 'A' && cp <= 'Z' ? cp + ('a' - 'A') : cp; }

// A view of one piece [begin, end) of the text, reading nothing outside it: regexes see each
// piece of the previous stage as a whole string.
class Piece {
 public:
  Piece(const uint32_t* cps, const uint8_t* flags, size_t begin, size_t end,
        std::vector<uint32_t>* out)
      : cps_(cps), flags_(flags), end_(end), emitted_(begin), out_(out) {}

  bool In(size_t p) const { return p < end_; }
  uint32_t Cp(size_t p) const { return p < end_ ? cps_[p] : 0xFFFFFFFF; }
  uint8_t Flags(size_t p) const { return p < end_ ? flags_[p] : 0; }
  bool Has(size_t p, uint8_t f) const { return (Flags(p) & f) != 0; }
  // In the piece and not \s, \p{L} or \p{N}.
  bool IsOther(size_t p) const { return In(p) && !Has(p, kL | kN | kWs); }
  size_t end() const { return end_; }

  // Ends the current word at `p`.
  void Emit(size_t p) {
    if (p > emitted_) out_->push_back(static_cast<uint32_t>(p - emitted_));
    emitted_ = p;
  }

 private:
  const uint32_t* cps_;
  const uint8_t* flags_;
  size_t end_;
  size_t emitted_;
  std::vector<uint32_t>* out_;
};

// 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive. Returns the length matched at `pos`.
size_t MatchContraction(const Piece& p, size_t pos, bool ignore_case) {
  if (p.Cp(pos) != '\'' || !p.In(pos + 1)) return 0;
  auto lower = [&](size_t i) { return ignore_case ? AsciiLower(p.Cp(i)) : p.Cp(i); };
  const uint32_t a = lower(pos + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (!p.In(pos + 2)) return 0;
  const uint32_t b = lower(pos + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// Whitespace at the end of a run: \s+(?!\S) leaves the last one to the next word unless the
// run reaches the end of the piece; a single one is \s+.
size_t WhitespaceRunEnd(const Piece& p, size_t pos) {
  size_t n = 0;
  while (p.Has(pos + n, kWs)) ++n;
  if (n > 1 && p.In(pos + n)) return pos + n - 1;
  return pos + (n > 0 ? n : 1);
}

void SplitGpt2(Piece p, size_t begin) {
  size_t pos = begin;
  while (pos < p.end()) {
    if (size_t n = MatchContraction(p, pos, /*ignore_case=*/false)) {
      p.Emit(pos += n);
      continue;
    }
    const size_t q = p.Cp(pos) == ' ' ? pos + 1 : pos;  // after an optional leading space
    if (p.Has(q, kL) || p.Has(q, kN)) {                 // ' ?\p{L}+' and ' ?\p{N}+'
      const uint8_t cls = p.Has(q, kL) ? kL : kN;
      pos = q;
      while (p.Has(pos, cls)) ++pos;
      p.Emit(pos);
      continue;
    }
    if (p.IsOther(q)) {  // ' ?[^\s\p{L}\p{N}]+'
      pos = q;
      while (p.IsOther(pos)) ++pos;
      p.Emit(pos);
      continue;
    }
    p.Emit(pos = WhitespaceRunEnd(p, pos));
  }
}

// The Llama-3 split; `max_digits` is 3 (\p{N}{1,3}) or 1 (qwen2's \p{N}).
void SplitLlama3(Piece p, size_t begin, size_t max_digits) {
  size_t pos = begin;
  while (pos < p.end()) {
    if (size_t n = MatchContraction(p, pos, /*ignore_case=*/true)) {
      p.Emit(pos += n);
      continue;
    }
    const uint32_t c = p.Cp(pos);
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c != '\r' && c != '\n' && !p.Has(pos, kN) && (p.Has(pos, kL) || p.Has(pos + 1, kL))) {
      ++pos;
      while (p.Has(pos, kL)) ++pos;
      p.Emit(pos);
      continue;
    }
    if (p.Has(pos, kN)) {  // \p{N}{1,max_digits}
      size_t group = pos;
      while (p.Has(pos, kN)) {
        if (++pos - group >= max_digits) {
          p.Emit(pos);
          group = pos;
        }
      }
      p.Emit(pos);
      continue;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*' (a lone space at the end of the piece lands here too).
    const size_t q = c == ' ' ? pos + 1 : pos;
    if (!p.Has(q, kL | kN | kWs)) {
      pos = q;
      while (p.IsOther(pos)) ++pos;
      while (p.Cp(pos) == '\r' || p.Cp(pos) == '\n') ++pos;
      p.Emit(pos);
      continue;
    }
    // \s*[\r\n]+ up to the last line break of the run, else \s+(?!\S) and \s+.
    size_t n = 0;
    size_t last_break_end = 0;
    while (p.Has(pos + n, kWs)) {
      if (p.Cp(pos + n) == '\r' || p.Cp(pos + n) == '\n') last_break_end = pos + n + 1;
      ++n;
    }
    p.Emit(pos = last_break_end > 0 ? last_break_end : WhitespaceRunEnd(p, pos));
  }
}

using Pieces = std::vector<uint32_t>;

// Runs `split(piece, begin)` on every piece of `in`.
template <typename Split>
Pieces ForEachPiece(const Pieces& in, const uint32_t* cps, const uint8_t* flags, Split split) {
  Pieces out;
  out.reserve(in.size() * 2);
  size_t begin = 0;
  for (uint32_t len : in) {
    split(Piece(cps, flags, begin, begin + len, &out), begin);
    begin += len;
  }
  return out;
}

// Every code point with flag `f` alone (the regex \p{N}); what lies between is a piece too.
void IsolateEach(Piece p, size_t begin, uint8_t f) {
  for (size_t pos = begin; pos < p.end(); ++pos) {
    if (p.Has(pos, f)) {
      p.Emit(pos);
      p.Emit(pos + 1);
    }
  }
  p.Emit(p.end());
}

// Maximal runs of code points with flag `f` (regexes like \p{N}+).
void IsolateRuns(Piece p, size_t begin, uint8_t f) {
  size_t pos = begin;
  while (pos < p.end()) {
    if (p.Has(pos, f)) {
      p.Emit(pos);
      while (p.Has(pos, f)) ++pos;
      p.Emit(pos);
    } else {
      ++pos;
    }
  }
  p.Emit(p.end());
}

// [0-9][0-9][0-9], leftmost and non-overlapping.
void IsolateDigitTriples(Piece p, size_t begin) {
  size_t pos = begin;
  while (pos + 3 <= p.end()) {
    if (p.Has(pos, kDigit) && p.Has(pos + 1, kDigit) && p.Has(pos + 2, kDigit)) {
      p.Emit(pos);
      p.Emit(pos += 3);
    } else {
      ++pos;
    }
  }
  p.Emit(p.end());
}

}  // namespace

absl::StatusOr<PreTokenizerInfo> LookupPreTokenizer(std::string_view name) {
  if (name.empty()) name = "default";
  for (const NamedPreTokenizer& p : kPreTokenizers) {
    if (p.name == name) return p.info;
  }
  return absl::InvalidArgumentError(
      StrCat("unsupported pre-tokenizer '", name,
             "' (tokenizer.ggml.pre); supported: ", SupportedPreTokenizerNames()));
}

std::string SupportedPreTokenizerNames() {
  std::string names;
  for (const NamedPreTokenizer& p : kPreTokenizers) {
    if (!names.empty()) names += ", ";
    names += p.name;
  }
  return names;
}

std::vector<uint32_t> PreTokenize(PreTokenizerType type, std::span<const uint32_t> cps) {
  if (cps.empty()) return {};
  std::vector<uint8_t> flags(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) flags[i] = FlagsOf(cps[i]);

  Pieces pieces = {static_cast<uint32_t>(cps.size())};
  auto run = [&](auto split) { pieces = ForEachPiece(pieces, cps.data(), flags.data(), split); };
  auto gpt2 = [](Piece p, size_t b) { SplitGpt2(p, b); };
  switch (type) {
    case PreTokenizerType::kGpt2:
      run(gpt2);
      break;
    case PreTokenizerType::kSmolLm:
      run([](Piece p, size_t b) { IsolateEach(p, b, kN); });
      run(gpt2);
      break;
    case PreTokenizerType::kLlama3:
      run([](Piece p, size_t b) { SplitLlama3(p, b, 3); });
      break;
    case PreTokenizerType::kQwen2:
      run([](Piece p, size_t b) { SplitLlama3(p, b, 1); });
      break;
    case PreTokenizerType::kDefault:
      run([](Piece p, size_t b) { IsolateRuns(p, b, kPunctClass); });
      run(gpt2);
      run([](Piece p, size_t b) { IsolateRuns(p, b, kN); });
      run([](Piece p, size_t b) { IsolateDigitTriples(p, b); });
      break;
  }
  return pieces;
}

}  // namespace tandem::text
