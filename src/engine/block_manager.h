// Paged KV-cache block allocator (vLLM-style) with reference counts and a prefix cache.
//
// A block is free (refcount 0, no valid content), in use (refcount > 0), or cached-evictable
// (refcount 0 but holding a full block of KV whose chained hash is registered). Allocation
// takes a free block first, then evicts the least recently used cached block. Prefix caching
// keys a full block by SHA-256(parent block's hash, the block's token ids, a salt), so a hit
// means the same tokens at the same positions after the same prefix.
//
// Thread-safety: none; owned and used by the engine's step thread.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/sha256.h"

namespace tandem {

using BlockHash = Sha256Digest;

struct BlockHashHasher {
  size_t operator()(const BlockHash& h) const {
    size_t v;
    static_assert(sizeof(v) <= sizeof(BlockHash));
    __builtin_memcpy(&v, h.data(), sizeof v);
    return v;
  }
};

struct BlockManagerOptions {
  int64_t num_blocks = 0;
  int block_size = 16;
  bool enable_prefix_cache = true;
  std::string hash_salt;  // e.g. the model's identity: caches of different models never mix
};

struct BlockManagerStats {
  int64_t prefix_queries = 0;  // full blocks looked up
  int64_t prefix_hits = 0;     // of which found
  int64_t evictions = 0;
};

class BlockManager {
 public:
  explicit BlockManager(const BlockManagerOptions& options);

  int block_size() const { return options_.block_size; }
  int64_t num_blocks() const { return options_.num_blocks; }
  // Blocks that an Allocate() could return now: free plus evictable cached ones.
  int64_t num_available() const { return static_cast<int64_t>(free_.size() + lru_.size()); }
  int64_t num_cached_evictable() const { return static_cast<int64_t>(lru_.size()); }
  int64_t num_in_use() const { return options_.num_blocks - num_available(); }
  const BlockManagerStats& stats() const { return stats_; }
  bool prefix_cache_enabled() const { return options_.enable_prefix_cache; }

  // A block with refcount 1, or nullopt when every block is in use.
  std::optional<int32_t> Allocate();
  // Drops one reference. At zero the block becomes evictable if it has a registered hash,
  // free otherwise.
  void Release(int32_t block);
  int32_t refcount(int32_t block) const { return refcount_[block]; }

  // Hash of a full block of `tokens` following the block whose hash is `parent` (nullptr for
  // the first block of a sequence).
  BlockHash HashBlock(const BlockHash* parent, std::span<const int32_t> tokens) const;
  // A cached block for `hash` with one more reference, or nullopt.
  std::optional<int32_t> Lookup(const BlockHash& hash);
  // Records that `block` (in use) now holds the full block described by `hash`. A hash that
  // is already registered to another block is left alone.
  void Register(int32_t block, const BlockHash& hash);

  // Drops every cached block's registration (e.g. after weights change). Blocks in use keep
  // their contents but are no longer shared with new requests.
  void ResetPrefixCache();

  // For tests: checks every internal invariant (free/LRU/refcount consistency).
  bool CheckInvariants() const;

 private:
  BlockManagerOptions options_;
  std::vector<int32_t> refcount_;
  std::vector<int32_t> free_;  // stack of free block ids
  std::list<int32_t> lru_;     // evictable cached blocks, least recently used first
  std::vector<std::list<int32_t>::iterator> lru_pos_;
  std::vector<std::optional<BlockHash>> block_hash_;
  std::unordered_map<BlockHash, int32_t, BlockHashHasher> cached_;
  BlockManagerStats stats_;
};

}  // namespace tandem
