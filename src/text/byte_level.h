// GPT-2's byte-level alphabet: every byte is shown as one printable code point, so that a BPE
// vocabulary of byte strings can be stored as text (GPT-2's bytes_to_unicode(); "Ġ" is the
// space byte). Vocabularies of GGUF "gpt2" tokenizers hold tokens and merges in this form.
// Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tandem::text {

// The code point that stands for `byte`.
uint32_t ByteToAlphabet(uint8_t byte);
// The byte a code point stands for, or nullopt when it is not in the alphabet.
std::optional<uint8_t> AlphabetToByte(uint32_t cp);

// Raw bytes -> alphabet text (UTF-8).
std::string ByteLevelEncode(std::string_view bytes);
// Alphabet text -> raw bytes; nullopt when `text` is not well-formed UTF-8 made only of
// alphabet code points (such a token can never be produced by byte-level BPE).
std::optional<std::string> ByteLevelDecode(std::string_view text);

}  // namespace tandem::text
