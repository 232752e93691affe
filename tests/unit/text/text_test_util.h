// Helpers shared by the src/text/ tests.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "text/byte_level.h"
#include "text/tokenizer.h"

namespace tandem::text::testing {

// Shows bytes readably in failure messages: printable ASCII as is, the rest escaped.
inline std::string Escaped(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

// A vocabulary of the 256 single bytes (ids 0..255, in byte order) followed by `extra`
// tokens (raw bytes; ids from 256 on), with `merges` given as raw byte pairs.
struct SmallVocab {
  TokenizerConfig config;
  explicit SmallVocab(const std::vector<std::string>& extra,
                      const std::vector<std::pair<std::string, std::string>>& merges = {}) {
    config.model = "gpt2";
    config.pre = "gpt2";
    for (int b = 0; b < 256; ++b) config.tokens.push_back(ByteLevelEncode(std::string(1, char(b))));
    for (const std::string& t : extra) config.tokens.push_back(ByteLevelEncode(t));
    for (const auto& [l, r] : merges) {
      config.merges.push_back(ByteLevelEncode(l) + " " + ByteLevelEncode(r));
    }
  }
  // Adds a token stored verbatim (special tokens are not in the byte-level alphabet form).
  int32_t AddSpecial(const std::string& text, TokenType type) {
    if (config.token_types.empty()) {
      config.token_types.assign(config.tokens.size(), static_cast<int32_t>(TokenType::kNormal));
    }
    config.tokens.push_back(text);
    config.token_types.push_back(static_cast<int32_t>(type));
    return static_cast<int32_t>(config.tokens.size() - 1);
  }
  std::unique_ptr<Tokenizer> Build() const {
    auto t = Tokenizer::Create(config);
    if (!t.ok()) return nullptr;
    return *std::move(t);
  }
};

inline std::vector<int32_t> Bytes(std::string_view s) {
  std::vector<int32_t> ids;
  for (unsigned char c : s) ids.push_back(c);
  return ids;
}

}  // namespace tandem::text::testing
