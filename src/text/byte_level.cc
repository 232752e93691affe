#include "text/byte_level.h"

#include <array>

#include "text/unicode.h"

namespace tandem::text {
namespace {

bool PrintsAsItself(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct Alphabet {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 0x144> to_byte{};  // the alphabet lies in U+0021..U+0143
  Alphabet() {
    to_byte.fill(-1);
    uint32_t next = 256;  // bytes that do not print as themselves take U+0100 upwards, in order
    for (int b = 0; b < 256; ++b) {
      to_cp[b] = PrintsAsItself(b) ? static_cast<uint32_t>(b) : next++;
      to_byte[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const Alphabet& GetAlphabet() {
  static const Alphabet* alphabet = new Alphabet();
  return *alphabet;
}

}  // namespace

uint32_t ByteToAlphabet(uint8_t byte) { return GetAlphabet().to_cp[byte]; }

std::optional<uint8_t> AlphabetToByte(uint32_t cp) {
  const Alphabet& a = GetAlphabet();
  if (cp >= a.to_byte.size() || a.to_byte[cp] < 0) return std::nullopt;
  return static_cast<uint8_t>(a.to_byte[cp]);
}

std::string ByteLevelEncode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) AppendUtf8(ByteToAlphabet(static_cast<uint8_t>(c)), &out);
  return out;
}

std::optional<std::string> ByteLevelDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const DecodedCodepoint d = DecodeCodepointLenient(text, pos);
    // Alphabet code points are at most two bytes long; reject non-shortest forms.
    const uint32_t shortest = d.cp < 0x80 ? 1 : 2;
    if (!d.valid || d.size != shortest) return std::nullopt;
    const std::optional<uint8_t> b = AlphabetToByte(d.cp);
    if (!b) return std::nullopt;
    out.push_back(static_cast<char>(*b));
    pos += d.size;
  }
  return out;
}

}  // namespace tandem::text
