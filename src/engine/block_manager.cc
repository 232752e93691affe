#include "engine/block_manager.h"

#include <algorithm>

#include "common/check.h"

namespace tandem {

BlockManager::BlockManager(const BlockManagerOptions& options)
    : options_(options),
      refcount_(options.num_blocks, 0),
      lru_pos_(options.num_blocks, lru_.end()),
      block_hash_(options.num_blocks) {
  TANDEM_CHECK_GT(options.num_blocks, 0);
  TANDEM_CHECK_GT(options.block_size, 0);
  free_.reserve(options.num_blocks);
  for (int64_t b = options.num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

std::optional<int32_t> BlockManager::Allocate() {
  int32_t block;
  if (!free_.empty()) {
    block = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    block = lru_.front();
    lru_.pop_front();
    lru_pos_[block] = lru_.end();
    cached_.erase(*block_hash_[block]);
    block_hash_[block].reset();
    ++stats_.evictions;
  } else {
    return std::nullopt;
  }
  TANDEM_DCHECK(refcount_[block] == 0);
  refcount_[block] = 1;
  return block;
}

void BlockManager::Release(int32_t block) {
  TANDEM_CHECK(block >= 0 && block < options_.num_blocks) << block;
  TANDEM_CHECK_GT(refcount_[block], 0) << "double release of block " << block;
  if (--refcount_[block] > 0) return;
  if (block_hash_[block].has_value()) {
    lru_pos_[block] = lru_.insert(lru_.end(), block);
  } else {
    free_.push_back(block);
  }
}

BlockHash BlockManager::HashBlock(const BlockHash* parent, std::span<const int32_t> tokens) const {
  Sha256 h;
  h.Update(options_.hash_salt);
  const uint8_t has_parent = parent != nullptr;
  h.Update(&has_parent, 1);
  if (parent) h.Update(parent->data(), parent->size());
  h.Update(tokens.data(), tokens.size_bytes());
  return h.Finish();
}

std::optional<int32_t> BlockManager::Lookup(const BlockHash& hash) {
  if (!options_.enable_prefix_cache) return std::nullopt;
  ++stats_.prefix_queries;
  auto it = cached_.find(hash);
  if (it == cached_.end()) return std::nullopt;
  ++stats_.prefix_hits;
  const int32_t block = it->second;
  if (refcount_[block] == 0) {
    lru_.erase(lru_pos_[block]);
    lru_pos_[block] = lru_.end();
  }
  ++refcount_[block];
  return block;
}

void BlockManager::Register(int32_t block, const BlockHash& hash) {
  if (!options_.enable_prefix_cache) return;
  TANDEM_DCHECK(refcount_[block] > 0);
  if (block_hash_[block].has_value() || cached_.contains(hash)) return;
  block_hash_[block] = hash;
  cached_.emplace(hash, block);
}

void BlockManager::ResetPrefixCache() {
  for (int32_t b : lru_) {
    lru_pos_[b] = lru_.end();
    free_.push_back(b);
  }
  lru_.clear();
  for (auto& h : block_hash_) h.reset();
  cached_.clear();
}

bool BlockManager::CheckInvariants() const {
  std::vector<int> seen(options_.num_blocks, 0);
  for (int32_t b : free_) {
    if (refcount_[b] != 0 || block_hash_[b].has_value()) return false;
    ++seen[b];
  }
  for (int32_t b : lru_) {
    if (refcount_[b] != 0 || !block_hash_[b].has_value()) return false;
    ++seen[b];
  }
  for (int64_t b = 0; b < options_.num_blocks; ++b) {
    if (refcount_[b] < 0) return false;
    if (refcount_[b] == 0 && seen[b] != 1) return false;  // every idle block is free xor evictable
    if (refcount_[b] > 0 && seen[b] != 0) return false;
    if (block_hash_[b].has_value()) {
      auto it = cached_.find(*block_hash_[b]);
      if (it == cached_.end() || it->second != b) return false;
    }
  }
  return cached_.size() == static_cast<size_t>(std::count_if(
                               block_hash_.begin(), block_hash_.end(),
                               [](const auto& h) { return h.has_value(); }));
}

}  // namespace tandem
