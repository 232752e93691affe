// The sending half of the hand-off protocol on its own, over a fake medium: nothing is written
// before the destination pinned the lease, one-sided writes are flushed before the end, and a
// lease pinned after the transfer failed is unpinned at once.
#include "transfer/protocol/sender.h"

#include <optional>
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
using testing::FakeMedium;
using wire::MessageType;

class SenderTest : public ::testing::Test {
 protected:
  static constexpr int64_t kBytes = 64;

  SenderTest()
      : cache_(MakeCache()),
        sender_(&medium_,
                SenderOptions{"prefill-0", 7, testing::SmallLayout(), absl::Seconds(10), cache_.data(), kBytes},
                [this](bool ok) { ++(ok ? succeeded_ : failed_); }) {}

  static std::vector<uint8_t> MakeCache() {  // 4 blocks of kBytes, each different
    std::vector<uint8_t> cache(4 * kBytes);
    for (size_t i = 0; i < cache.size(); ++i) cache[i] = static_cast<uint8_t>(i * 7);
    return cache;
  }

  void Start(uint64_t id, std::vector<int32_t> blocks, absl::Duration deadline = absl::Seconds(10)) {
    OutboundRequest r;
    r.id = id;
    r.destination.endpoint.worker_id = "decode-0";
    r.destination.endpoint.epoch = 99;
    r.destination.endpoint.address = "fake://decode-0";
    r.destination.lease_id = "lease-" + std::to_string(id);
    r.destination.blocks = std::move(blocks);
    r.peer.key = r.destination.endpoint.address;
    r.deadline = absl::Now() + deadline;
    sender_.Start(std::move(r));
  }
  void Ack(MessageType type, uint64_t transfer, absl::Status status = absl::OkStatus()) {
    sender_.OnAck(1, wire::Ack{type, transfer, std::move(status)});
  }
  void Finish(uint64_t id) {
    sender_.Finish(id, [this](absl::Status s) { outcome_ = std::move(s); });
  }
  // Transfer `id` into `blocks`: handshake and pin accepted, `copies` sent, Finish asked; the
  // writes are medium_.writes, not completed yet.
  void PinAndSend(uint64_t id, std::vector<int32_t> blocks, std::vector<BlockCopy> copies,
                  absl::Duration deadline = absl::Seconds(10)) {
    Start(id, std::move(blocks), deadline);
    Ack(MessageType::kHelloAck, 0);
    Ack(MessageType::kBeginAck, id);
    sender_.Send(id, std::move(copies), nullptr);
    Finish(id);
  }

  FakeMedium medium_;
  std::vector<uint8_t> cache_;  // the local cache's host memory
  Sender sender_;
  int succeeded_ = 0, failed_ = 0;
  std::optional<absl::Status> outcome_;
};

TEST_F(SenderTest, NothingIsWrittenBeforeTheLeaseIsPinned) {
  Start(1, {4, 5});
  sender_.Send(1, {{0, 0}}, nullptr);
  EXPECT_THAT(medium_.Types(1), ElementsAre(MessageType::kHello));
  Ack(MessageType::kHelloAck, 0);
  EXPECT_THAT(medium_.Types(1), ElementsAre(MessageType::kHello, MessageType::kBegin));
  sender_.Send(1, {{1, 1}}, nullptr);
  EXPECT_TRUE(medium_.writes.empty()) << "a block was written into an unpinned lease";
  Ack(MessageType::kBeginAck, 1);
  ASSERT_EQ(medium_.writes.size(), 2u);  // both queued Sends, in order
  EXPECT_EQ(medium_.writes[0].writes[0].dst_block, 4);
  EXPECT_EQ(medium_.writes[1].writes[0].dst_block, 5);
}

TEST_F(SenderTest, OneSidedWritesAreFlushedBeforeTheEnd) {
  medium_.path = wire::DataPath::kOneSided;
  PinAndSend(1, {2}, {{0, 0}});
  medium_.writes[0].on_done(absl::OkStatus());
  EXPECT_EQ(medium_.Types(1).back(), MessageType::kBegin) << "ended before the flush";
  ASSERT_EQ(medium_.flushes.size(), 1u);
  medium_.flushes[0](absl::OkStatus());
  EXPECT_EQ(medium_.Types(1).back(), MessageType::kEnd);
  EXPECT_FALSE(outcome_.has_value());
  Ack(MessageType::kEndAck, 1);
  ASSERT_TRUE(outcome_.has_value());
  EXPECT_TRUE(outcome_->ok()) << *outcome_;
  EXPECT_EQ(succeeded_, 1);
}

// Each block's checksum as the sender read it, in the lease's order, not the order of the Sends.
TEST_F(SenderTest, TheEndCarriesTheChecksumOfEachBlockAsItWasRead) {
  PinAndSend(1, {9, 8}, {{3, 1}, {2, 0}});  // local block 3 is the lease's second block
  medium_.writes[0].on_done(absl::OkStatus());
  ASSERT_EQ(medium_.Types(1).back(), MessageType::kEnd);
  auto end = wire::DecodeEnd(medium_.sent[1].back());
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_THAT(end->digests, ElementsAre(BlockDigest(cache_.data() + 2 * kBytes, kBytes),
                                        BlockDigest(cache_.data() + 3 * kBytes, kBytes)));
  EXPECT_NE(end->digests[0], end->digests[1]);
}

TEST_F(SenderTest, ALeasePinnedAfterTheTransferFailedIsUnpinnedAtOnce) {
  Start(1, {2});
  Ack(MessageType::kHelloAck, 0);
  sender_.Abandon(1);  // the caller dropped it while the lease was being pinned
  Ack(MessageType::kBeginAck, 1);
  ASSERT_EQ(medium_.flushes.size(), 1u);
  medium_.flushes[0](absl::OkStatus());
  const std::string& last = medium_.sent[1].back();
  ASSERT_EQ(*wire::PeekType(last), MessageType::kEnd);
  EXPECT_EQ(wire::DecodeEnd(last)->status.code(), absl::StatusCode::kCancelled);
}

TEST_F(SenderTest, ARefusedHandshakeFailsItsTransfersWithTheReason) {
  Start(1, {2});
  Start(2, {3});
  Finish(1);
  Ack(MessageType::kHelloAck, 0, absl::FailedPreconditionError("stale epoch 99"));
  ASSERT_TRUE(outcome_.has_value());
  EXPECT_EQ(outcome_->code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(outcome_->message()), ::testing::HasSubstr("stale epoch"));
  EXPECT_THAT(medium_.closed, ElementsAre(1));
  EXPECT_EQ(failed_, 1);
}

TEST_F(SenderTest, TheDeadlineEndsAStuckTransferAndUnpinsItsLease) {
  PinAndSend(1, {2}, {{0, 0}}, absl::Seconds(1));  // a write that never completes
  sender_.Tick(absl::Now() + absl::Seconds(2));
  ASSERT_TRUE(outcome_.has_value());
  EXPECT_EQ(outcome_->code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_EQ(medium_.flushes.size(), 1u);  // then kEnd(error) tells the destination
  medium_.flushes[0](absl::OkStatus());
  EXPECT_EQ(medium_.Types(1).back(), MessageType::kEnd);
}

}  // namespace
}  // namespace tandem::transfer
