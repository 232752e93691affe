#include "text/bpe_model.h"

#include <queue>

#include "text/byte_level.h"

namespace tandem::text {

BpeModel BpeModel::Build(std::span<const std::string_view> tokens,
                         std::span<const std::string> merges) {
  BpeModel m;
  StringMap<int32_t> symbols;  // raw bytes -> symbol id; only needed while building
  auto intern = [&](std::string raw) {
    auto [it, inserted] = symbols.try_emplace(std::move(raw), static_cast<int32_t>(symbols.size()));
    if (inserted) m.symbol_token_.push_back(-1);
    return it->second;
  };

  for (size_t id = 0; id < tokens.size(); ++id) {
    std::optional<std::string> raw = ByteLevelDecode(tokens[id]);
    if (!raw) continue;
    m.raw_to_token_.insert_or_assign(*raw, static_cast<int32_t>(id));
    m.symbol_token_[intern(std::move(*raw))] = static_cast<int32_t>(id);
  }
  for (int b = 0; b < 256; ++b) {
    const std::string raw(1, static_cast<char>(b));
    m.byte_symbol_[b] = intern(raw);
    m.byte_token_[b] = m.FindRaw(raw).value_or(-1);
  }
  m.merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string_view merge = merges[rank];
    const size_t space = merge.find(' ', 1);  // as llama.cpp splits them
    if (space == std::string_view::npos) continue;
    std::optional<std::string> left = ByteLevelDecode(merge.substr(0, space));
    std::optional<std::string> right = ByteLevelDecode(merge.substr(space + 1));
    if (!left || !right || left->empty() || right->empty()) continue;
    const int32_t result = intern(*left + *right);
    const int32_t l = intern(std::move(*left));
    const int32_t r = intern(std::move(*right));
    m.merges_.try_emplace(PairKey(l, r), Merge{static_cast<int32_t>(rank), result});
  }
  return m;
}

std::optional<int32_t> BpeModel::FindRaw(std::string_view bytes) const {
  auto it = raw_to_token_.find(bytes);
  if (it == raw_to_token_.end()) return std::nullopt;
  return it->second;
}

const BpeModel::Merge* BpeModel::FindMerge(int32_t left, int32_t right) const {
  auto it = merges_.find(PairKey(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::EncodeWord(std::string_view word, bool ignore_merges,
                          std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges) {
    if (std::optional<int32_t> id = FindRaw(word)) {
      out->push_back(*id);
      return;
    }
  }
  struct Symbol {
    int32_t id;  // symbol id of word[start, start + len)
    int32_t prev;
    int32_t next;
    uint32_t start;
    uint32_t len;  // 0 once merged into its left neighbour
  };
  const int32_t n = static_cast<int32_t>(word.size());
  std::vector<Symbol> syms(n);
  for (int32_t i = 0; i < n; ++i) {
    syms[i] = {byte_symbol_[static_cast<uint8_t>(word[i])], i - 1, i + 1 < n ? i + 1 : -1,
               static_cast<uint32_t>(i), 1};
  }

  struct Bigram {
    int32_t rank;
    int32_t left;  // symbol indices
    int32_t right;
    int32_t left_id;  // their symbol ids when queued, to skip stale entries
    int32_t right_id;
    int32_t result;
  };
  // Lowest rank first, then the leftmost pair.
  auto later = [](const Bigram& a, const Bigram& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  std::vector<Bigram> storage;
  storage.reserve(n);
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(later)> queue(later,
                                                                          std::move(storage));
  auto try_queue = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    if (const Merge* m = FindMerge(syms[l].id, syms[r].id)) {
      queue.push({m->rank, l, r, syms[l].id, syms[r].id, m->result});
    }
  };
  for (int32_t i = 1; i < n; ++i) try_queue(i - 1, i);

  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& left = syms[b.left];
    Symbol& right = syms[b.right];
    if (left.len == 0 || right.len == 0 || left.id != b.left_id || right.id != b.right_id) {
      continue;  // one side has changed since this pair was queued
    }
    left.id = b.result;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = b.left;
    try_queue(left.prev, b.left);
    try_queue(b.left, left.next);
  }

  for (int32_t i = 0; i != -1; i = syms[i].next) {
    const Symbol& s = syms[i];
    const int32_t token = symbol_token_[s.id];
    if (token >= 0) {
      out->push_back(token);
      continue;
    }
    // Not in the vocabulary (only possible when a merge's result is not a token): one token
    // per byte. (llama.cpp looks up single bytes of the alphabet text instead, which finds
    // only printable ASCII bytes; a vocabulary whose merges all make tokens never gets here.)
    for (uint32_t k = s.start; k < s.start + s.len; ++k) {
      const int32_t byte_token = byte_token_[static_cast<uint8_t>(word[k])];
      if (byte_token >= 0) out->push_back(byte_token);
    }
  }
}

}  // namespace tandem::text
