// The router's approximate view of one prefill worker's prefix cache: a bounded LRU set of the
// chained block hashes (placement::BlockChain) of the prompts the router sent there. The worker
// really caches those blocks (and evicts them LRU too), so the longest leading run of a new
// prompt's chain found here estimates how many of its tokens that worker can skip. It is only an
// estimate: the worker may have evicted blocks sooner (memory pressure) or kept them longer; a
// wrong guess costs a cache miss, never a wrong answer.
//
// Not thread-safe: the registry owns one per prefill worker and uses it under its lock.
// Move-only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>

namespace tandem::router {

class PrefixIndex {
 public:
  explicit PrefixIndex(size_t capacity = 65536);
  PrefixIndex(PrefixIndex&&) = default;
  PrefixIndex& operator=(PrefixIndex&&) = default;
  PrefixIndex(const PrefixIndex&) = delete;
  PrefixIndex& operator=(const PrefixIndex&) = delete;

  // Records that the worker now holds every block of `chain` (most recently used), evicting the
  // least recently used hashes beyond the capacity.
  void Insert(std::span<const uint64_t> chain);
  // How many leading blocks of `chain` the worker probably holds.
  int64_t MatchedBlocks(std::span<const uint64_t> chain) const;
  size_t size() const { return where_.size(); }

 private:
  size_t capacity_;
  std::list<uint64_t> lru_;  // front: most recently used
  std::unordered_map<uint64_t, std::list<uint64_t>::iterator> where_;
};

}  // namespace tandem::router
