// StagedKvTransport on a real GPU: device -> pinned host -> UCX (TCP loopback) -> pinned host ->
// device between two transports in this process. Skips without a device.
#include "transfer/staged/staged_kv_transport.h"

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gpu_transfer/gpu_test_util.h"
#include "gtest/gtest.h"
#include "unit/transfer/transfer_test_util.h"

namespace tandem::transfer {
namespace {

using gpu_testing::DeviceKvCache;

constexpr uint64_t kSeed = 11;
constexpr uint8_t kGuard = 0x5a;

class StagedTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TANDEM_REQUIRE_DEVICE_OR_SKIP();
    auto src = DeviceKvCache::Create(gpu_testing::TestLayout(), 8);
    ASSERT_TRUE(src.ok()) << src.status();
    source_ = std::move(*src);
    ASSERT_TRUE(source_->FillPattern(kSeed).ok());
    auto dst = DeviceKvCache::Create(gpu_testing::TestLayout(), 16);
    ASSERT_TRUE(dst.ok()) << dst.status();
    pool_ = std::move(*dst);
    ASSERT_TRUE(pool_->FillByte(kGuard).ok());

    StagedKvTransportOptions r;
    r.cache = pool_.get();
    r.layout = gpu_testing::TestLayout();
    r.worker_id = "decode-staged";
    r.lease_handler = &handler_;
    r.ucx.transports = "tcp,sm,self";
    auto receiver = StagedKvTransport::Create(r);
    ASSERT_TRUE(receiver.ok()) << receiver.status();
    receiver_ = std::move(*receiver);

    StagedKvTransportOptions s;
    s.cache = source_.get();
    s.layout = gpu_testing::TestLayout();
    s.worker_id = "prefill-staged";
    s.ucx.transports = "tcp,sm,self";
    auto sender = StagedKvTransport::Create(s);
    ASSERT_TRUE(sender.ok()) << sender.status();
    sender_ = std::move(*sender);
  }

  KvDestination Lease(const std::string& id, std::vector<int32_t> blocks) {
    return testing::Destination(receiver_->local_endpoint(), id, std::move(blocks));
  }

  std::unique_ptr<DeviceKvCache> source_;
  std::unique_ptr<DeviceKvCache> pool_;
  testing::RecordingLeaseHandler handler_;
  std::unique_ptr<StagedKvTransport> receiver_;
  std::unique_ptr<StagedKvTransport> sender_;
};

TEST_F(StagedTransportTest, BlocksArriveInDeviceMemoryBeforeTheLeaseIsReported) {
  auto t = sender_->StartTransfer(Lease("lease-s", {2, 3, 9, 15}), absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(t.ok()) << t.status();
  (*t)->Send(std::vector<BlockCopy>{{0, 0}, {1, 1}});
  (*t)->Send(std::vector<BlockCopy>{{4, 2}, {7, 3}});
  auto status = testing::FinishAndWait(**t, absl::Seconds(30));
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(status->ok()) << *status;
  EXPECT_EQ(handler_.ended_count("lease-s"), 1);
  const int64_t bpb = pool_->layout().bytes_per_block();
  const std::vector<std::pair<int32_t, int64_t>> placed = {{2, 0}, {3, 1}, {9, 4}, {15, 7}};
  for (auto [dst, src] : placed) {
    auto got = pool_->ReadBlock(dst);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(*got == gpu_testing::Pattern(kSeed, src, bpb)) << "block " << dst;
  }
  auto untouched = pool_->ReadBlock(4);
  ASSERT_TRUE(untouched.ok());
  EXPECT_TRUE(*untouched == std::vector<uint8_t>(bpb, kGuard));
}

TEST_F(StagedTransportTest, BadSendFailsAndUnpinsTheLease) {
  auto t = sender_->StartTransfer(Lease("lease-bad", {0}), absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(t.ok()) << t.status();
  (*t)->Send(std::vector<BlockCopy>{{100, 0}});  // no such source block
  auto status = testing::FinishAndWait(**t, absl::Seconds(30));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kInvalidArgument) << *status;
  // The aborted UCX transfer unpins the lease (if it was pinned at all) shortly after.
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (handler_.pinned() != 0 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(handler_.pinned(), 0);
  EXPECT_EQ(handler_.ends(), handler_.starts());
}

}  // namespace
}  // namespace tandem::transfer
