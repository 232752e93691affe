#include "text/spm_model.h"

#include <cstdio>
#include <queue>

namespace tandem::text {
namespace {

constexpr std::string_view kSpace = "\xe2\x96\x81";  // U+2581

// Bytes in the UTF-8 sequence a lead byte starts (1 for a stray continuation byte), as
// llama.cpp's unicode_len_utf8.
size_t Utf8Length(uint8_t lead) {
  static constexpr uint8_t kByHighNibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kByHighNibble[lead >> 4];
}

struct Symbol {
  uint32_t begin = 0, size = 0;  // bytes of the text; size 0: merged into its left neighbour
  int32_t prev = -1, next = -1;
};

struct Bigram {
  float score;
  int32_t left, right;
  uint32_t size;  // bytes of left + right when the bigram was made (stale when they changed)
};

// Highest score first; on a tie the leftmost.
struct LowerPriority {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

SpmModel SpmModel::Build(std::span<const std::string_view> tokens, std::span<const float> scores,
                         int32_t unk_id) {
  SpmModel m;
  m.unk_id_ = unk_id;
  m.scores_.assign(scores.begin(), scores.end());
  m.scores_.resize(tokens.size(), 0.0f);
  for (size_t i = 0; i < tokens.size(); ++i) m.text_to_id_.insert_or_assign(std::string(tokens[i]), static_cast<int32_t>(i));
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "<0x%02X>", b);
    auto it = m.text_to_id_.find(std::string_view(hex));
    if (it == m.text_to_id_.end()) it = m.text_to_id_.find(std::string(1, static_cast<char>(b)));
    m.byte_token_[b] = it == m.text_to_id_.end() ? -1 : it->second;
  }
  return m;
}

void SpmModel::AppendBytes(std::string_view bytes, std::vector<int32_t>* out) const {
  for (char c : bytes) {
    const int32_t id = byte_token_[static_cast<uint8_t>(c)];
    if (id >= 0) {
      out->push_back(id);
    } else if (unk_id_ >= 0) {
      out->push_back(unk_id_);
    }
  }
}

void SpmModel::Encode(std::string_view text, std::vector<int32_t>* out) const {
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    Symbol s;
    s.begin = static_cast<uint32_t>(pos);
    s.size = static_cast<uint32_t>(std::min(Utf8Length(static_cast<uint8_t>(text[pos])), text.size() - pos));
    s.prev = static_cast<int32_t>(symbols.size()) - 1;
    pos += s.size;
    s.next = pos == text.size() ? -1 : static_cast<int32_t>(symbols.size()) + 1;
    symbols.push_back(s);
  }
  std::priority_queue<Bigram, std::vector<Bigram>, LowerPriority> queue;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const uint32_t size = symbols[left].size + symbols[right].size;
    auto it = text_to_id_.find(text.substr(symbols[left].begin, size));
    if (it == text_to_id_.end()) return;
    queue.push({scores_[it->second], left, right, size});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& left = symbols[b.left];
    Symbol& right = symbols[b.right];
    if (left.size == 0 || right.size == 0 || left.size + right.size != b.size) continue;  // stale
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = b.left;
    try_add(left.prev, b.left);
    try_add(b.left, left.next);
  }
  for (int32_t i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) {
    const std::string_view piece = text.substr(symbols[i].begin, symbols[i].size);
    auto it = text_to_id_.find(piece);
    if (it != text_to_id_.end()) {
      out->push_back(it->second);
    } else {
      AppendBytes(piece, out);
    }
  }
}

std::string EscapeSpmWhitespace(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  for (char c : text) {
    if (c == ' ') {
      out += kSpace;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string UnescapeSpmWhitespace(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    if (text.substr(pos, kSpace.size()) == kSpace) {
      out.push_back(' ');
      pos += kSpace.size();
    } else {
      out.push_back(text[pos++]);
    }
  }
  return out;
}

}  // namespace tandem::text
