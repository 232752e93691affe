// The receiving half of the hand-off protocol on its own, over a fake medium: handshake checks,
// blocks vetted against the lease of their own connection, end(OK) only once every counted block
// is placed and matches its checksum, TransferEnded exactly once per pinned lease.
#include "transfer/protocol/receiver.h"

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "transfer/protocol/block_digest.h"
#include "unit/transfer/protocol/fake_medium.h"
#include "unit/transfer/transfer_test_util.h"

namespace tandem::transfer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::FakeMedium;
using testing::RecordingLeaseHandler;
using wire::MessageType;

constexpr uint64_t kEpoch = 42;
constexpr int64_t kBytes = 1024;

class ReceiverTest : public ::testing::Test {
 protected:
  ReceiverTest()
      : cache_(16 * kBytes),
        receiver_(&medium_, ReceiverOptions{"decode-0", kEpoch, testing::SmallLayout(), 16, kBytes,
                                            &handler_, absl::Seconds(5), cache_.data()}) {}

  void Hello(ConnectionId conn, uint64_t epoch = kEpoch, KvLayoutInfo layout = testing::SmallLayout()) {
    Deliver(conn, wire::Encode(wire::Hello{"prefill-" + std::to_string(conn), epoch, layout}));
  }
  void Begin(ConnectionId conn, uint64_t transfer, const std::string& lease, std::vector<int32_t> blocks) {
    wire::Begin b;
    b.transfer_id = transfer;
    b.lease_id = lease;
    b.num_blocks = static_cast<int32_t>(blocks.size());
    b.remaining_ms = 10'000;
    b.blocks = std::move(blocks);
    Deliver(conn, wire::Encode(b));
  }
  void End(ConnectionId conn, uint64_t transfer, absl::Status status, int64_t blocks_sent,
           std::vector<uint64_t> digests = {}) {
    Deliver(conn, wire::Encode(wire::End{transfer, std::move(status), blocks_sent, std::move(digests)}));
  }
  // Fills cache block `block` as a sender's block `seed` would arrive, and returns the checksum
  // the sender computed of it.
  uint64_t Land(int32_t block, uint8_t seed) {
    uint8_t* p = cache_.data() + block * kBytes;
    for (int64_t i = 0; i < kBytes; ++i) p[i] = static_cast<uint8_t>(seed + i);
    return BlockDigest(p, kBytes);
  }
  void Deliver(ConnectionId conn, const std::string& message) {
    receiver_.OnMessage(conn, *wire::PeekType(message), message);
  }
  // Offers block `index` of `transfer` and, when accepted, places it.
  absl::StatusOr<int32_t> Block(ConnectionId conn, uint64_t transfer, int32_t index) {
    absl::StatusOr<int32_t> dst = receiver_.OnBlockOffered(conn, {transfer, index}, kBytes);
    if (dst.ok()) receiver_.OnBlockPlaced(conn, transfer, absl::OkStatus());
    return dst;
  }

  FakeMedium medium_;
  RecordingLeaseHandler handler_;
  std::vector<uint8_t> cache_;  // the local cache's host memory (16 blocks)
  Receiver receiver_;
};

TEST_F(ReceiverTest, BlocksGoWhereTheLeaseSaysAndOnlyFromTheConnectionThatPinnedIt) {
  Hello(1);
  Hello(2);
  Begin(1, 7, "lease-a", {5, 9});
  ASSERT_EQ(medium_.LastAck(1).type, MessageType::kBeginAck);
  ASSERT_TRUE(medium_.LastAck(1).status.ok());
  EXPECT_FALSE(Block(2, 7, 0).ok()) << "another connection wrote into lease-a";
  EXPECT_EQ(*Block(1, 7, 1), 9);  // the lease's block, never one the sender names
  EXPECT_EQ(*Block(1, 7, 0), 5);
  EXPECT_EQ(receiver_.OnBlockOffered(1, {7, 2}, kBytes).status().code(),
            absl::StatusCode::kInvalidArgument);  // beyond the lease
  EXPECT_EQ(receiver_.OnBlockOffered(1, {8, 0}, kBytes).status().code(),
            absl::StatusCode::kFailedPrecondition);  // no such transfer
}

TEST_F(ReceiverTest, EndOkWaitsForTheBlocksItCounts) {
  Hello(1);
  Begin(1, 3, "lease-b", {0, 1});
  ASSERT_TRUE(Block(1, 3, 0).ok());
  End(1, 3, absl::OkStatus(), 2);  // the second block is still on its way
  EXPECT_EQ(handler_.ends(), 0);
  ASSERT_TRUE(Block(1, 3, 1).ok());
  auto ended = handler_.WaitEnded("lease-b", absl::ZeroDuration());
  ASSERT_TRUE(ended.has_value());
  EXPECT_TRUE(ended->ok()) << *ended;
  EXPECT_EQ(medium_.LastAck(1).type, MessageType::kEndAck);
  EXPECT_TRUE(medium_.LastAck(1).status.ok());
  EXPECT_THAT(medium_.committed, ElementsAre(0, 1));
}

TEST_F(ReceiverTest, AMisfitBlockFailsTheLeaseAtItsEnd) {
  Hello(1);
  Begin(1, 3, "lease-c", {4});
  EXPECT_FALSE(receiver_.OnBlockOffered(1, {3, 0}, kBytes - 1).ok());  // wrong size
  End(1, 3, absl::OkStatus(), 1);
  auto ended = handler_.WaitEnded("lease-c", absl::ZeroDuration());
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->code(), absl::StatusCode::kDataLoss) << *ended;
  EXPECT_EQ(medium_.LastAck(1).status.code(), absl::StatusCode::kDataLoss);
}

// A forged sender repeating a block (to pass the count with a stale one left behind) fails.
TEST_F(ReceiverTest, ABlockSentTwiceFailsTheLease) {
  Hello(1);
  Begin(1, 3, "lease-d", {4, 6});
  ASSERT_TRUE(Block(1, 3, 0).ok());
  EXPECT_EQ(Block(1, 3, 0).status().code(), absl::StatusCode::kInvalidArgument);
  End(1, 3, absl::OkStatus(), 2);
  auto ended = handler_.WaitEnded("lease-d", absl::ZeroDuration());
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->code(), absl::StatusCode::kDataLoss) << *ended;
}

// An end after fewer blocks than the lease holds is reported with what really arrived, so the
// decode side can refuse a prompt whose blocks were never written.
TEST_F(ReceiverTest, AnEarlyEndReportsOnlyTheBlocksThatArrived) {
  Hello(1);
  Begin(1, 3, "lease-e", {4, 6, 8});
  ASSERT_TRUE(Block(1, 3, 0).ok());
  End(1, 3, absl::OkStatus(), 1);
  auto ended = handler_.WaitEnded("lease-e", absl::ZeroDuration());
  ASSERT_TRUE(ended.has_value());
  EXPECT_TRUE(ended->ok()) << *ended;
  EXPECT_EQ(handler_.filled("lease-e"), 1);
}

TEST_F(ReceiverTest, BlocksThatMatchTheirChecksumsFillTheLease) {
  Hello(1);
  Begin(1, 3, "lease-k", {5, 9});
  ASSERT_TRUE(Block(1, 3, 0).ok());
  ASSERT_TRUE(Block(1, 3, 1).ok());
  End(1, 3, absl::OkStatus(), 2, {Land(5, 1), Land(9, 2)});
  auto ended = handler_.WaitEnded("lease-k", absl::ZeroDuration());
  ASSERT_TRUE(ended.has_value());
  EXPECT_TRUE(ended->ok()) << *ended;
  EXPECT_TRUE(medium_.LastAck(1).status.ok());
}

// Bit rot on the way: the lease fails loudly, naming the block, and decode never sees it.
TEST_F(ReceiverTest, ACorruptedBlockFailsTheLeaseNamingIt) {
  Hello(1);
  Begin(1, 3, "lease-l", {5, 9});
  ASSERT_TRUE(Block(1, 3, 0).ok());
  ASSERT_TRUE(Block(1, 3, 1).ok());
  const uint64_t first = Land(5, 1), second = Land(9, 2);
  cache_[9 * kBytes + 17] ^= 0x04;  // one bit of the second block flipped
  End(1, 3, absl::OkStatus(), 2, {first, second});
  auto ended = handler_.WaitEnded("lease-l", absl::ZeroDuration());
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->code(), absl::StatusCode::kDataLoss) << *ended;
  EXPECT_THAT(std::string(ended->message()), HasSubstr("block 1 (cache block 9) arrived corrupted"));
  EXPECT_EQ(medium_.LastAck(1).status.code(), absl::StatusCode::kDataLoss) << "the sender must learn it";
  EXPECT_TRUE(medium_.committed.empty()) << "corrupted blocks were committed";
}

// One-sided writes are never seen here, but their checksums are checked all the same.
TEST_F(ReceiverTest, OneSidedBlocksAreCheckedToo) {
  Hello(1);
  wire::Begin b;
  b.transfer_id = 4;
  b.lease_id = "lease-m";
  b.num_blocks = 1;
  b.remaining_ms = 10'000;
  b.data_path = wire::DataPath::kOneSided;
  b.blocks = {3};
  Deliver(1, wire::Encode(b));
  const uint64_t sent = Land(3, 7);
  cache_[3 * kBytes] ^= 1;
  End(1, 4, absl::OkStatus(), 1, {sent});
  EXPECT_EQ(handler_.WaitEnded("lease-m", absl::ZeroDuration())->code(), absl::StatusCode::kDataLoss);
}

TEST_F(ReceiverTest, AnEndWhoseChecksumsDoNotCountItsBlocksFails) {
  Hello(1);
  Begin(1, 3, "lease-n", {5, 9});
  ASSERT_TRUE(Block(1, 3, 0).ok());
  ASSERT_TRUE(Block(1, 3, 1).ok());
  End(1, 3, absl::OkStatus(), 2, {Land(5, 1)});
  auto ended = handler_.WaitEnded("lease-n", absl::ZeroDuration());
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->code(), absl::StatusCode::kDataLoss) << *ended;
  EXPECT_THAT(std::string(ended->message()), HasSubstr("1 block checksums for 2 blocks"));
}

TEST_F(ReceiverTest, StaleEpochIsRefusedAndItsConnectionClosed) {
  Hello(1, kEpoch + 1);
  const wire::Ack ack = medium_.LastAck(1);
  EXPECT_EQ(ack.type, MessageType::kHelloAck);
  EXPECT_EQ(ack.status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(ack.status.message()), HasSubstr("stale epoch"));
  EXPECT_THAT(medium_.closed, ElementsAre(1));
  Begin(1, 1, "lease-d", {0});  // not answered: the handshake failed
  EXPECT_EQ(handler_.starts(), 0);
  EXPECT_EQ(medium_.sent[1].size(), 1u);
}

TEST_F(ReceiverTest, LayoutMismatchIsRefusedNamingTheField) {
  KvLayoutInfo other = testing::SmallLayout();
  other.layout.head_dim = 32;
  Hello(1, kEpoch, other);
  EXPECT_THAT(std::string(medium_.LastAck(1).status.message()), HasSubstr("head_dim"));
}

TEST_F(ReceiverTest, BlocksOutsideTheCacheAreRefusedBeforeTheHandlerIsAsked) {
  Hello(1);
  Begin(1, 1, "lease-e", {3, 16});
  EXPECT_EQ(medium_.LastAck(1).status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(handler_.starts(), 0);
}

TEST_F(ReceiverTest, ConnectionLossEndsEveryLeaseOfItOnce) {
  Hello(1);
  Hello(2);
  Begin(1, 1, "lease-f", {0});
  Begin(1, 2, "lease-g", {1});
  Begin(2, 1, "lease-h", {2});
  receiver_.OnConnectionLost(1, absl::UnavailableError("reset"));
  receiver_.OnConnectionLost(1, absl::UnavailableError("reset again"));
  EXPECT_EQ(handler_.ended_count("lease-f"), 1);
  EXPECT_EQ(handler_.ended_count("lease-g"), 1);
  EXPECT_EQ(handler_.WaitEnded("lease-f", absl::ZeroDuration())->code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(handler_.ended_count("lease-h"), 0) << "another connection's lease was ended";
  EXPECT_EQ(handler_.pinned(), 1);
}

TEST_F(ReceiverTest, AFailedCommitFailsTheLeaseAndTheEnd) {
  medium_.commit_status = absl::InternalError("upload failed");
  Hello(1);
  Begin(1, 1, "lease-i", {0});
  ASSERT_TRUE(Block(1, 1, 0).ok());
  End(1, 1, absl::OkStatus(), 1);
  EXPECT_EQ(handler_.WaitEnded("lease-i", absl::ZeroDuration())->code(), absl::StatusCode::kInternal);
  EXPECT_EQ(medium_.LastAck(1).status.code(), absl::StatusCode::kInternal);
}

TEST_F(ReceiverTest, ALeasePastItsSendersDeadlinePlusGraceEnds) {
  Hello(1);
  Begin(1, 1, "lease-j", {0});
  EXPECT_LT(receiver_.Tick(absl::Now()), absl::InfiniteFuture());
  EXPECT_EQ(handler_.ends(), 0);
  receiver_.Tick(absl::Now() + absl::Seconds(16));  // 10 s left + 5 s grace
  EXPECT_EQ(handler_.WaitEnded("lease-j", absl::ZeroDuration())->code(),
            absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace tandem::transfer
