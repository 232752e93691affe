// The in-process transport's fault injection, which other modules' tests rely on.
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "transfer/in_process/in_process_kv_transport.h"
#include "unit/transfer/transfer_test_util.h"

namespace tandem::transfer {
namespace {

using ::testing::HasSubstr;
using namespace tandem::transfer::testing;

constexpr absl::Duration kWait = absl::Seconds(10);

class InProcessKvTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = MakeCache(SmallLayout(), 8);
    dst_ = MakeCache(SmallLayout(), 8);
    FillRandom(src_, 7);
    FillByte(dst_, 0x33);
    prefill_ = Make("prefill-0", src_, nullptr);
    decode_ = Make("decode-0", dst_, &handler_);
  }

  std::unique_ptr<InProcessKvTransport> Make(const std::string& id, const TestCache& cache,
                                             KvLeaseHandler* handler, bool checksums = true) {
    InProcessKvTransportOptions o;
    o.block_checksums = checksums;
    o.hub = hub_;
    o.worker_id = id;
    o.cache = cache.get();
    o.layout = SmallLayout();
    o.lease_handler = handler;
    return InProcessKvTransport::Create(o).value();
  }

  std::unique_ptr<KvTransfer> Start(const std::string& lease, std::vector<int32_t> blocks,
                                    absl::Duration deadline = kWait) {
    auto t = prefill_->StartTransfer(Destination(decode_->local_endpoint(), lease, blocks),
                                     absl::Now() + deadline);
    EXPECT_TRUE(t.ok()) << t.status();
    return std::move(t).value();
  }

  std::shared_ptr<InProcessKvHub> hub_ = std::make_shared<InProcessKvHub>();
  TestCache src_, dst_;
  RecordingLeaseHandler handler_;
  std::unique_ptr<InProcessKvTransport> prefill_, decode_;
};

TEST_F(InProcessKvTransportTest, InjectedRefusalFailsWithoutAskingTheDestination) {
  InProcessFault fault;
  fault.kind = InProcessFault::Kind::kRefuse;
  fault.status = absl::UnavailableError("decode worker unreachable");
  fault.transfers = 1;
  prefill_->InjectFault(fault);
  auto t = Start("lease-a", {0});
  t->Send(std::vector<BlockCopy>{{0, 0}});
  auto status = FinishAndWait(*t, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(status->message()), HasSubstr("unreachable"));
  EXPECT_EQ(handler_.starts(), 0);

  // The fault applied to one transfer only.
  auto next = Start("lease-b", {0});
  next->Send(std::vector<BlockCopy>{{0, 0}});
  status = FinishAndWait(*next, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->ok()) << *status;
  EXPECT_EQ(prefill_->transfers_failed(), 1);
  EXPECT_EQ(prefill_->transfers_succeeded(), 1);
}

TEST_F(InProcessKvTransportTest, InjectedDropEndsTheLeaseWithTheError) {
  InProcessFault fault;
  fault.kind = InProcessFault::Kind::kDropAfterBlocks;
  fault.after_blocks = 2;
  prefill_->InjectFault(fault);
  auto t = Start("lease-drop", {0, 1, 2, 3});
  t->Send(std::vector<BlockCopy>{{0, 0}, {1, 1}, {2, 2}, {3, 3}});
  auto status = FinishAndWait(*t, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kUnavailable) << *status;
  auto ended = handler_.WaitEnded("lease-drop", kWait);
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(BlockEquals(src_, 1, dst_, 1));   // arrived before the drop
  EXPECT_TRUE(BlockIsByte(dst_, 2, 0x33));      // never arrived
  EXPECT_EQ(handler_.ended_count("lease-drop"), 1);
}

TEST_F(InProcessKvTransportTest, CorruptedBlocksFailTheTransferInsteadOfFillingTheLease) {
  InProcessFault fault;
  fault.kind = InProcessFault::Kind::kCorruptBlocks;
  fault.transfers = 1;
  prefill_->InjectFault(fault);
  auto t = Start("lease-rot", {4, 6});
  t->Send(std::vector<BlockCopy>{{0, 0}, {1, 1}});
  auto status = FinishAndWait(*t, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kDataLoss) << *status;
  EXPECT_THAT(std::string(status->message()), HasSubstr("arrived corrupted"));
  auto ended = handler_.WaitEnded("lease-rot", kWait);
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->code(), absl::StatusCode::kDataLoss) << "the lease was filled with damaged blocks";

  // The next transfer (no fault) passes its checks.
  auto next = Start("lease-clean", {4, 6});
  next->Send(std::vector<BlockCopy>{{0, 0}, {1, 1}});
  status = FinishAndWait(*next, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->ok()) << *status;
  EXPECT_TRUE(BlockEquals(src_, 1, dst_, 6));
}

// What the checksums are for: without them the same damage fills the lease as if all were well.
TEST_F(InProcessKvTransportTest, WithChecksumsOffCorruptionGoesUnnoticed) {
  prefill_ = Make("prefill-1", src_, nullptr, /*checksums=*/false);
  InProcessFault fault;
  fault.kind = InProcessFault::Kind::kCorruptBlocks;
  prefill_->InjectFault(fault);
  auto t = Start("lease-silent-rot", {2});
  t->Send(std::vector<BlockCopy>{{3, 0}});
  auto status = FinishAndWait(*t, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->ok()) << *status;
  EXPECT_FALSE(BlockEquals(src_, 3, dst_, 2));
}

TEST_F(InProcessKvTransportTest, InjectedDelayRunsIntoTheDeadline) {
  InProcessFault fault;
  fault.kind = InProcessFault::Kind::kDelay;
  fault.delay = absl::Milliseconds(300);
  prefill_->InjectFault(fault);
  const absl::Time start = absl::Now();
  auto t = Start("lease-slow", {0}, absl::Milliseconds(100));
  t->Send(std::vector<BlockCopy>{{0, 0}});
  auto status = FinishAndWait(*t, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kDeadlineExceeded) << *status;
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(900));
  EXPECT_EQ(handler_.starts(), 0);
}

TEST_F(InProcessKvTransportTest, InjectedDelayWithinTheDeadlineStillSucceeds) {
  InProcessFault fault;
  fault.kind = InProcessFault::Kind::kDelay;
  fault.delay = absl::Milliseconds(50);
  prefill_->InjectFault(fault);
  auto t = Start("lease-ok", {3});
  t->Send(std::vector<BlockCopy>{{5, 0}});
  auto status = FinishAndWait(*t, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->ok()) << *status;
  EXPECT_TRUE(BlockEquals(src_, 5, dst_, 3));
}

TEST_F(InProcessKvTransportTest, UnresponsivePeerEndsAtTheDeadline) {
  InProcessFault fault;
  fault.kind = InProcessFault::Kind::kUnresponsive;
  prefill_->InjectFault(fault);
  const absl::Time start = absl::Now();
  auto t = Start("lease-silent", {0}, absl::Milliseconds(200));
  t->Send(std::vector<BlockCopy>{{0, 0}});
  auto status = FinishAndWait(*t, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(700));
}

TEST_F(InProcessKvTransportTest, FinishAfterTheSourceIsGoneStillCallsBack) {
  auto t = Start("lease-late", {0});
  prefill_.reset();
  auto status = FinishAndWait(*t, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kCancelled);
}

TEST_F(InProcessKvTransportTest, NoLeaseHandlerRefusesInboundTransfers) {
  auto t = decode_->StartTransfer(Destination(prefill_->local_endpoint(), "lease-r", {0}),
                                  absl::Now() + kWait);
  ASSERT_TRUE(t.ok());
  auto status = FinishAndWait(**t, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status->message()), HasSubstr("accepts no inbound"));
}

}  // namespace
}  // namespace tandem::transfer
