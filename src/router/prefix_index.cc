#include "router/prefix_index.h"

namespace tandem::router {

PrefixIndex::PrefixIndex(size_t capacity) : capacity_(capacity > 0 ? capacity : 1) {}

void PrefixIndex::Insert(std::span<const uint64_t> chain) {
  // Last block first, so that a prompt's first blocks end up the most recently used: they are
  // the ones other prompts share (a system prompt), and a chain is worthless past its first
  // missing block. Evicting from the tail of prompts is what the workers' caches do as well.
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    if (auto found = where_.find(*it); found != where_.end()) {
      lru_.splice(lru_.begin(), lru_, found->second);
      continue;
    }
    lru_.push_front(*it);
    where_.emplace(*it, lru_.begin());
    if (where_.size() > capacity_) {
      where_.erase(lru_.back());
      lru_.pop_back();
    }
  }
}

int64_t PrefixIndex::MatchedBlocks(std::span<const uint64_t> chain) const {
  int64_t n = 0;
  for (uint64_t h : chain) {
    if (!where_.contains(h)) break;
    ++n;
  }
  return n;
}

}  // namespace tandem::router
