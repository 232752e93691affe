// A decode worker's KV leases: never decode from partial KV, never lose blocks.
#include "gtest/gtest.h"
#include "worker/kv_lease_table.h"

namespace tandem::worker {
namespace {

using Blocks = std::vector<int32_t>;

TEST(KvLeaseTableTest, FilledLeaseIsAdoptedOnce) {
  KvLeaseTable t({});
  const std::string id = t.Add("r", {4, 5, 6}, absl::Now() + absl::Seconds(10));
  EXPECT_EQ(t.reserved_blocks(), 3);
  EXPECT_EQ(t.Adopt(id).status().code(), absl::StatusCode::kFailedPrecondition);  // nothing arrived yet
  ASSERT_TRUE(t.TransferStarting(id, Blocks{4, 5, 6}).ok());
  EXPECT_EQ(t.Adopt(id).status().code(), absl::StatusCode::kFailedPrecondition);  // still arriving
  t.TransferEnded(id, absl::OkStatus(), 3);
  auto blocks = t.Adopt(id, 3);
  ASSERT_TRUE(blocks.ok());
  EXPECT_EQ(*blocks, (Blocks{4, 5, 6}));
  EXPECT_EQ(t.Adopt(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(t.size(), 0u);
}

TEST(KvLeaseTableTest, FailedTransferLeavesTheLeaseForARetry) {
  KvLeaseTable t({});
  const std::string id = t.Add("r", {1, 2}, absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(t.TransferStarting(id, Blocks{1, 2}).ok());
  EXPECT_EQ(t.TransferStarting(id, Blocks{1, 2}).code(), absl::StatusCode::kFailedPrecondition);  // one writer
  t.TransferEnded(id, absl::UnavailableError("peer died"), 0);
  EXPECT_EQ(t.Adopt(id).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(t.TransferStarting(id, Blocks{1, 2}).ok());
  t.TransferEnded(id, absl::OkStatus(), 2);
  EXPECT_TRUE(t.Adopt(id).ok());
}

TEST(KvLeaseTableTest, ExpiryFreesReservedAndUnadoptedLeasesButNotPinnedOnes) {
  KvLeaseTable t({.adopt_timeout = absl::Seconds(5)});
  const absl::Time now = absl::Now();
  const std::string reserved = t.Add("a", {1}, now + absl::Seconds(1));
  const std::string pinned = t.Add("b", {2}, now + absl::Seconds(1));
  const std::string filled = t.Add("c", {3}, now + absl::Seconds(1));
  ASSERT_TRUE(t.TransferStarting(pinned, Blocks{2}).ok());
  ASSERT_TRUE(t.TransferStarting(filled, Blocks{3}).ok());
  t.TransferEnded(filled, absl::OkStatus(), 1);  // now waits up to 5 s for Decode
  EXPECT_TRUE(t.TakeExpired(now).empty());
  EXPECT_EQ(t.TakeExpired(now + absl::Seconds(2)), (Blocks{1}));
  EXPECT_EQ(t.TakeExpired(now + absl::Minutes(1)), (Blocks{3}));  // the pinned one stays
  EXPECT_EQ(t.size(), 1u);
  t.TransferEnded(pinned, absl::DeadlineExceededError("deadline"), 0);
  EXPECT_EQ(t.TakeExpired(now + absl::Minutes(1)), (Blocks{2}));
  EXPECT_EQ(t.TransferStarting(reserved, Blocks{1}).code(), absl::StatusCode::kNotFound);
}

TEST(KvLeaseTableTest, ReleaseWhileBeingWrittenFreesWhenTheTransferEnds) {
  KvLeaseTable t({});
  const std::string id = t.Add("r", {7, 8}, absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(t.TransferStarting(id, Blocks{7, 8}).ok());
  auto now_blocks = t.Release(id);
  ASSERT_TRUE(now_blocks.ok());
  EXPECT_TRUE(now_blocks->empty());  // still being written: not yet
  t.TransferEnded(id, absl::OkStatus(), 2);
  EXPECT_EQ(t.Adopt(id).status().code(), absl::StatusCode::kFailedPrecondition);  // released: never decoded
  EXPECT_EQ(t.TakeExpired(absl::Now()), (Blocks{7, 8}));
  EXPECT_EQ(t.size(), 0u);
}

TEST(KvLeaseTableTest, TransferLargerThanTheLeaseIsRefused) {
  KvLeaseTable t({});
  const std::string id = t.Add("r", {1, 2}, absl::Now() + absl::Seconds(10));
  EXPECT_EQ(t.TransferStarting(id, Blocks{1, 2, 3}).code(), absl::StatusCode::kInvalidArgument);
}

// A forged sender cannot choose where it writes: only the lease's own blocks, in its order.
TEST(KvLeaseTableTest, TransferIntoBlocksOutsideTheLeaseIsRefused) {
  KvLeaseTable t({});
  const std::string id = t.Add("r", {1, 2}, absl::Now() + absl::Seconds(10));
  EXPECT_EQ(t.TransferStarting(id, Blocks{1, 9}).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(t.TransferStarting(id, Blocks{2, 1}).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(t.TransferStarting(id, Blocks{1}).ok());  // a prefix of the lease is fine
}

// A sender that ends its transfer before the prompt's blocks all arrived leaves stale KV: the
// decode is refused and the lease's blocks are freed.
TEST(KvLeaseTableTest, LeaseFilledShortOfThePromptIsNeverDecoded) {
  KvLeaseTable t({});
  const std::string id = t.Add("r", {1, 2, 3}, absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(t.TransferStarting(id, Blocks{1, 2, 3}).ok());
  t.TransferEnded(id, absl::OkStatus(), 1);
  auto adopted = t.Adopt(id, 2);
  EXPECT_EQ(adopted.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(t.TakeExpired(absl::Now()), (Blocks{1, 2, 3}));
}

}  // namespace
}  // namespace tandem::worker
