#include "engine/block_manager.h"

#include <random>
#include <set>

#include "gtest/gtest.h"

namespace tandem {
namespace {

BlockManager Make(int64_t n, bool prefix = true) {
  BlockManagerOptions o;
  o.num_blocks = n;
  o.block_size = 4;
  o.enable_prefix_cache = prefix;
  o.hash_salt = "test";
  return BlockManager(o);
}

TEST(BlockManagerTest, AllocatesEveryBlockOnceThenRunsOut) {
  BlockManager bm = Make(8);
  std::set<int32_t> seen;
  for (int i = 0; i < 8; ++i) {
    auto b = bm.Allocate();
    ASSERT_TRUE(b.has_value());
    EXPECT_TRUE(seen.insert(*b).second);
    EXPECT_EQ(bm.refcount(*b), 1);
  }
  EXPECT_FALSE(bm.Allocate().has_value());
  EXPECT_EQ(bm.num_available(), 0);
  bm.Release(3);
  EXPECT_EQ(bm.num_available(), 1);
  EXPECT_EQ(bm.Allocate(), 3);
  EXPECT_TRUE(bm.CheckInvariants());
}

TEST(BlockManagerTest, ChainedHashesDependOnTheWholePrefix) {
  BlockManager bm = Make(4);
  const std::vector<int32_t> a = {1, 2, 3, 4}, b = {5, 6, 7, 8};
  const BlockHash ha = bm.HashBlock(nullptr, a);
  EXPECT_EQ(ha, bm.HashBlock(nullptr, a));
  EXPECT_NE(ha, bm.HashBlock(nullptr, b));
  const BlockHash hab = bm.HashBlock(&ha, b);
  EXPECT_NE(hab, bm.HashBlock(nullptr, b));  // same tokens, different prefix
  BlockManagerOptions other;
  other.num_blocks = 1;
  other.block_size = 4;
  other.hash_salt = "another model";
  EXPECT_NE(BlockManager(other).HashBlock(nullptr, a), ha);  // models never share cache entries
}

TEST(BlockManagerTest, PrefixHitSharesTheBlockAndKeepsItUntilEvicted) {
  BlockManager bm = Make(3);
  const BlockHash h = bm.HashBlock(nullptr, std::vector<int32_t>{9, 9, 9, 9});
  const int32_t b = *bm.Allocate();
  bm.Register(b, h);
  EXPECT_EQ(bm.Lookup(h), b);  // shared by a second sequence
  EXPECT_EQ(bm.refcount(b), 2);
  bm.Release(b);
  bm.Release(b);
  EXPECT_EQ(bm.refcount(b), 0);
  EXPECT_EQ(bm.num_cached_evictable(), 1);
  EXPECT_EQ(bm.num_available(), 3);
  EXPECT_EQ(bm.Lookup(h), b);  // still cached after its users left
  bm.Release(b);
  EXPECT_EQ(bm.stats().prefix_hits, 2);
  EXPECT_TRUE(bm.CheckInvariants());
}

TEST(BlockManagerTest, EvictsLeastRecentlyUsedCachedBlocksOnlyWhenNothingIsFree) {
  BlockManager bm = Make(3);
  std::vector<BlockHash> hashes;
  std::vector<int32_t> blocks;
  for (int i = 0; i < 3; ++i) {
    hashes.push_back(bm.HashBlock(nullptr, std::vector<int32_t>{i, i, i, i}));
    blocks.push_back(*bm.Allocate());
    bm.Register(blocks[i], hashes[i]);
  }
  for (int i = 0; i < 3; ++i) bm.Release(blocks[i]);  // LRU order: 0, 1, 2
  ASSERT_EQ(bm.Lookup(hashes[0]), blocks[0]);           // touch 0: order 1, 2, 0
  bm.Release(blocks[0]);
  const int32_t fresh = *bm.Allocate();
  EXPECT_EQ(fresh, blocks[1]);                           // the least recently used went first
  EXPECT_FALSE(bm.Lookup(hashes[1]).has_value());
  EXPECT_TRUE(bm.Lookup(hashes[0]).has_value());
  EXPECT_EQ(bm.stats().evictions, 1);
  EXPECT_TRUE(bm.CheckInvariants());
}

TEST(BlockManagerTest, DisabledPrefixCacheNeverHits) {
  BlockManager bm = Make(2, /*prefix=*/false);
  const BlockHash h = bm.HashBlock(nullptr, std::vector<int32_t>{1, 1, 1, 1});
  const int32_t b = *bm.Allocate();
  bm.Register(b, h);
  EXPECT_FALSE(bm.Lookup(h).has_value());
  bm.Release(b);
  EXPECT_EQ(bm.num_cached_evictable(), 0);
}

TEST(BlockManagerTest, InvariantsHoldUnderRandomOperations) {
  BlockManager bm = Make(32);
  std::mt19937 rng(42);
  std::vector<int32_t> held;
  std::vector<BlockHash> registered;
  for (int step = 0; step < 20000; ++step) {
    const int op = rng() % 4;
    if (op == 0) {
      if (auto b = bm.Allocate()) held.push_back(*b);
    } else if (op == 1 && !held.empty()) {
      const size_t i = rng() % held.size();
      bm.Release(held[i]);
      held.erase(held.begin() + i);
    } else if (op == 2 && !held.empty()) {
      const BlockHash h = bm.HashBlock(nullptr, std::vector<int32_t>{static_cast<int32_t>(rng() % 50), 0, 0, 0});
      bm.Register(held[rng() % held.size()], h);
      registered.push_back(h);
    } else if (op == 3 && !registered.empty()) {
      if (auto b = bm.Lookup(registered[rng() % registered.size()])) held.push_back(*b);
    }
    ASSERT_EQ(bm.num_in_use() + bm.num_available(), 32);
    if (step % 97 == 0) {
      ASSERT_TRUE(bm.CheckInvariants()) << "step " << step;
    }
  }
  for (int32_t b : held) bm.Release(b);
  EXPECT_EQ(bm.num_available(), 32);
  EXPECT_TRUE(bm.CheckInvariants());
}

}  // namespace
}  // namespace tandem
