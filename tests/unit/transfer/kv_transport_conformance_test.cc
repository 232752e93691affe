// Behaviour every KvTransport must show, run against every medium a test binary has (host
// media: conformance_media.cc; GPU media: tests/gpu_transfer/conformance_gpu_media.cc): bytes
// arrive intact in the right blocks and nowhere else, refusals (layout, epoch, lease) fail the
// transfer with a message that says why, deadlines end transfers to dead peers, no lease stays
// pinned when a transfer is abandoned or a side shuts down, and many transfers can run at once.
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "unit/transfer/kv_transport_conformance.h"
#include "unit/transfer/transfer_test_util.h"

namespace tandem::transfer::testing {

std::map<std::string, MakerFactory>& ConformanceMakers() {
  static auto* makers = new std::map<std::string, MakerFactory>();
  return *makers;
}

bool BlockEquals(ConformanceCache& a, int64_t block_a, ConformanceCache& b, int64_t block_b) {
  return a.Block(block_a) == b.Block(block_b);
}

bool BlockIsByte(ConformanceCache& cache, int64_t block, uint8_t value) {
  const std::vector<uint8_t> bytes = cache.Block(block);
  return std::all_of(bytes.begin(), bytes.end(), [value](uint8_t b) { return b == value; });
}

void KvTransportConformanceTest::SetUp() {
  auto it = ConformanceMakers().find(GetParam());
  if (it != ConformanceMakers().end()) maker_ = it->second();
  if (maker_ == nullptr) GTEST_SKIP() << GetParam() << " cannot run here";
}

std::unique_ptr<KvTransport> KvTransportConformanceTest::Make(const std::string& id,
                                                              ConformanceCache& cache,
                                                              KvLeaseHandler* handler) {
  return maker_->Make(id, cache, SmallLayout(), handler);
}

namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(20);  // generous: a hang is what we catch

TEST_P(KvTransportConformanceTest, BlocksArriveIntactAndNothingElseIsTouched) {
  auto src = MakeCache(SmallLayout(), 16);
  auto dst = MakeCache(SmallLayout(), 32);
  src->FillRandom(1);
  dst->FillByte(0xAB);
  RecordingLeaseHandler handler;
  auto prefill = Make("prefill-0", *src);
  auto decode = Make("decode-0", *dst, &handler);

  const std::vector<int32_t> dst_blocks = {5, 17, 3, 30, 11};
  auto transfer =
      prefill->StartTransfer(Destination(decode->local_endpoint(), "lease-1", dst_blocks),
                             absl::Now() + kWait);
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  const std::vector<BlockCopy> copies = {{9, 0}, {2, 1}, {15, 2}, {0, 3}, {7, 4}};
  (*transfer)->Send(copies);
  auto status = FinishAndWait(**transfer, kWait);
  ASSERT_TRUE(status.has_value()) << "Finish never called back";
  ASSERT_TRUE(status->ok()) << *status;

  for (const BlockCopy& c : copies) {
    EXPECT_TRUE(BlockEquals(*src, c.src_block, *dst, dst_blocks[c.index])) << "index " << c.index;
  }
  for (int b = 0; b < 32; ++b) {
    if (std::find(dst_blocks.begin(), dst_blocks.end(), b) != dst_blocks.end()) continue;
    EXPECT_TRUE(BlockIsByte(*dst, b, 0xAB)) << "guard block " << b << " was written";
  }
  EXPECT_EQ(handler.starts(), 1);
  auto ended = handler.WaitEnded("lease-1", kWait);
  ASSERT_TRUE(ended.has_value());
  EXPECT_TRUE(ended->ok()) << *ended;
  EXPECT_EQ(handler.pinned(), 0);
}

TEST_P(KvTransportConformanceTest, ChunkedSendsWhileTheCallerComputes) {
  auto src = MakeCache(SmallLayout(), 24);
  auto dst = MakeCache(SmallLayout(), 24);
  src->FillRandom(2);
  dst->FillByte(0);
  RecordingLeaseHandler handler;
  auto prefill = Make("prefill-0", *src);
  auto decode = Make("decode-0", *dst, &handler);

  std::vector<int32_t> dst_blocks;
  for (int i = 0; i < 12; ++i) dst_blocks.push_back(23 - 2 * i);
  auto transfer = prefill->StartTransfer(
      Destination(decode->local_endpoint(), "lease-chunks", dst_blocks), absl::Now() + kWait);
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  // Three chunks of four blocks; the first is sent before the lease can have been pinned.
  for (int chunk = 0; chunk < 3; ++chunk) {
    std::vector<BlockCopy> copies;
    for (int i = 0; i < 4; ++i) copies.push_back({chunk * 4 + i, chunk * 4 + i});
    (*transfer)->Send(copies);
    absl::SleepFor(absl::Milliseconds(20));  // "computing the next chunk"
  }
  auto status = FinishAndWait(**transfer, kWait);
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(status->ok()) << *status;
  for (int i = 0; i < 12; ++i) EXPECT_TRUE(BlockEquals(*src, i, *dst, dst_blocks[i])) << i;
  for (int b = 0; b < 24; b += 2) EXPECT_TRUE(BlockIsByte(*dst, b, 0)) << b;
}

TEST_P(KvTransportConformanceTest, LayoutMismatchKnownLocallyFailsAtOnce) {
  auto src = MakeCache(SmallLayout(), 4);
  auto dst = MakeCache(SmallLayout(), 4);
  RecordingLeaseHandler handler;
  auto prefill = Make("prefill-0", *src);
  auto decode = Make("decode-0", *dst, &handler);
  KvDestination d = Destination(decode->local_endpoint(), "lease-x", {0});
  d.endpoint.layout.layout.head_dim = 32;
  auto transfer = prefill->StartTransfer(d, absl::Now() + kWait);
  ASSERT_FALSE(transfer.ok());
  EXPECT_EQ(transfer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(transfer.status().message()), HasSubstr("head_dim"));
  EXPECT_EQ(handler.starts(), 0);
}

TEST_P(KvTransportConformanceTest, DestinationRefusesALayoutMismatchNamingTheField) {
  // The destination's real layout differs from what its (stale) endpoint record says.
  KvLayoutInfo other = SmallLayout();
  other.model_id = "another-model";
  auto src = MakeCache(SmallLayout(), 4);
  auto dst = MakeCache(other, 4);
  RecordingLeaseHandler handler;
  auto prefill = Make("prefill-0", *src);
  auto decode = Make("decode-0", *dst, &handler, other);
  KvDestination d = Destination(decode->local_endpoint(), "lease-m", {1});
  d.endpoint.layout = SmallLayout();
  auto transfer = prefill->StartTransfer(d, absl::Now() + kWait);
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  (*transfer)->Send(std::vector<BlockCopy>{{0, 0}});
  auto status = FinishAndWait(**transfer, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kFailedPrecondition) << *status;
  EXPECT_THAT(std::string(status->message()), HasSubstr("model"));
  EXPECT_THAT(std::string(status->message()), HasSubstr("another-model"));
  EXPECT_EQ(handler.starts(), 0);
}

TEST_P(KvTransportConformanceTest, StaleEpochIsRefused) {
  auto src = MakeCache(SmallLayout(), 4);
  auto dst = MakeCache(SmallLayout(), 4);
  dst->FillByte(0x5A);
  RecordingLeaseHandler handler;
  auto prefill = Make("prefill-0", *src);
  auto decode = Make("decode-0", *dst, &handler);
  KvDestination d = Destination(decode->local_endpoint(), "lease-stale", {2});
  d.endpoint.epoch ^= 0x1234;  // what the router remembered from before a restart
  auto transfer = prefill->StartTransfer(d, absl::Now() + kWait);
  std::optional<absl::Status> status = transfer.status();
  if (transfer.ok()) {  // a medium whose address carries the epoch refuses at once
    (*transfer)->Send(std::vector<BlockCopy>{{0, 0}});
    status = FinishAndWait(**transfer, kWait);
  }
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kFailedPrecondition) << *status;
  EXPECT_THAT(std::string(status->message()), HasSubstr("stale epoch"));
  EXPECT_EQ(handler.starts(), 0);
  EXPECT_TRUE(BlockIsByte(*dst, 2, 0x5A));
}

TEST_P(KvTransportConformanceTest, LeaseRefusalFailsTheTransferAndWritesNothing) {
  auto src = MakeCache(SmallLayout(), 4);
  auto dst = MakeCache(SmallLayout(), 4);
  src->FillRandom(3);
  dst->FillByte(0x11);
  RecordingLeaseHandler handler;
  handler.Refuse("lease-gone", absl::NotFoundError("lease lease-gone expired"));
  auto prefill = Make("prefill-0", *src);
  auto decode = Make("decode-0", *dst, &handler);
  auto transfer = prefill->StartTransfer(
      Destination(decode->local_endpoint(), "lease-gone", {0, 1}), absl::Now() + kWait);
  ASSERT_TRUE(transfer.ok());
  (*transfer)->Send(std::vector<BlockCopy>{{0, 0}, {1, 1}});
  auto status = FinishAndWait(**transfer, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kNotFound) << *status;
  EXPECT_THAT(std::string(status->message()), HasSubstr("expired"));
  EXPECT_EQ(handler.ends(), 0);
  EXPECT_TRUE(BlockIsByte(*dst, 0, 0x11));
  EXPECT_TRUE(BlockIsByte(*dst, 1, 0x11));
}

TEST_P(KvTransportConformanceTest, DeadPeerFailsWithinTheDeadline) {
  auto src = MakeCache(SmallLayout(), 4);
  auto dst = MakeCache(SmallLayout(), 4);
  RecordingLeaseHandler handler;
  auto prefill = Make("prefill-0", *src);
  KvEndpoint gone;
  {
    auto decode = Make("decode-0", *dst, &handler);
    gone = decode->local_endpoint();
  }
  const absl::Duration deadline = absl::Seconds(2);
  const absl::Time start = absl::Now();
  auto transfer =
      prefill->StartTransfer(Destination(gone, "lease-dead", {0}), absl::Now() + deadline);
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  (*transfer)->Send(std::vector<BlockCopy>{{0, 0}});
  auto status = FinishAndWait(**transfer, deadline + absl::Seconds(3));
  ASSERT_TRUE(status.has_value()) << "Finish hung past the deadline";
  EXPECT_LE(absl::Now() - start, deadline + absl::Seconds(1));
  EXPECT_TRUE(status->code() == absl::StatusCode::kDeadlineExceeded ||
              status->code() == absl::StatusCode::kUnavailable)
      << *status;
}

TEST_P(KvTransportConformanceTest, AbandonedTransferUnpinsTheLease) {
  auto src = MakeCache(SmallLayout(), 4);
  auto dst = MakeCache(SmallLayout(), 4);
  RecordingLeaseHandler handler;
  auto prefill = Make("prefill-0", *src);
  auto decode = Make("decode-0", *dst, &handler);
  {
    auto transfer = prefill->StartTransfer(
        Destination(decode->local_endpoint(), "lease-cancel", {0, 1}), absl::Now() + kWait);
    ASSERT_TRUE(transfer.ok());
    (*transfer)->Send(std::vector<BlockCopy>{{0, 0}});
    ASSERT_TRUE(handler.WaitStarted("lease-cancel", kWait));
  }  // the request was cancelled: the handle goes away without Finish
  auto ended = handler.WaitEnded("lease-cancel", kWait);
  ASSERT_TRUE(ended.has_value()) << "the lease stayed pinned";
  EXPECT_FALSE(ended->ok());
  EXPECT_EQ(handler.pinned(), 0);
  EXPECT_EQ(handler.ended_count("lease-cancel"), 1);
}

TEST_P(KvTransportConformanceTest, DestinationShutdownEndsPinnedLeasesAndFailsTheSender) {
  auto src = MakeCache(SmallLayout(), 4);
  auto dst = MakeCache(SmallLayout(), 4);
  RecordingLeaseHandler handler;
  auto prefill = Make("prefill-0", *src);
  auto decode = Make("decode-0", *dst, &handler);
  auto transfer = prefill->StartTransfer(
      Destination(decode->local_endpoint(), "lease-shutdown", {0, 1}), absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(transfer.ok());
  (*transfer)->Send(std::vector<BlockCopy>{{0, 0}});
  ASSERT_TRUE(handler.WaitStarted("lease-shutdown", kWait));
  decode.reset();
  auto ended = handler.WaitEnded("lease-shutdown", absl::ZeroDuration());
  ASSERT_TRUE(ended.has_value()) << "destruction left the lease pinned";
  EXPECT_FALSE(ended->ok());
  (*transfer)->Send(std::vector<BlockCopy>{{1, 1}});
  auto status = FinishAndWait(**transfer, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_FALSE(status->ok());
  EXPECT_EQ(handler.ended_count("lease-shutdown"), 1);
}

TEST_P(KvTransportConformanceTest, SourceShutdownCancelsAndUnpins) {
  auto src = MakeCache(SmallLayout(), 4);
  auto dst = MakeCache(SmallLayout(), 4);
  RecordingLeaseHandler handler;
  auto prefill = Make("prefill-0", *src);
  auto decode = Make("decode-0", *dst, &handler);
  auto transfer = prefill->StartTransfer(
      Destination(decode->local_endpoint(), "lease-src", {0, 1}), absl::Now() + kWait);
  ASSERT_TRUE(transfer.ok());
  (*transfer)->Send(std::vector<BlockCopy>{{0, 0}});
  ASSERT_TRUE(handler.WaitStarted("lease-src", kWait));
  prefill.reset();
  auto status = FinishAndWait(**transfer, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kCancelled) << *status;
  auto ended = handler.WaitEnded("lease-src", kWait);
  ASSERT_TRUE(ended.has_value()) << "the lease stayed pinned";
  EXPECT_FALSE(ended->ok());
}

TEST_P(KvTransportConformanceTest, SixtyFourConcurrentTransfers) {
  constexpr int kTransfers = 64;
  constexpr int kBlocksEach = 3;
  auto src = MakeCache(SmallLayout(), kTransfers * kBlocksEach);
  auto dst = MakeCache(SmallLayout(), kTransfers * kBlocksEach + 8);
  src->FillRandom(4);
  dst->FillByte(0xEE);
  RecordingLeaseHandler handler;
  auto prefill = Make("prefill-0", *src);
  auto decode = Make("decode-0", *dst, &handler);

  // Started from four threads at once; destination blocks interleaved across transfers.
  std::vector<std::unique_ptr<KvTransfer>> transfers(kTransfers);
  std::vector<std::vector<int32_t>> dst_blocks(kTransfers);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kTransfers; i += 4) {
        for (int k = 0; k < kBlocksEach; ++k) dst_blocks[i].push_back(k * kTransfers + i + 8);
        auto transfer = prefill->StartTransfer(
            Destination(decode->local_endpoint(), "lease-" + std::to_string(i), dst_blocks[i]),
            absl::Now() + kWait);
        ASSERT_TRUE(transfer.ok()) << transfer.status();
        std::vector<BlockCopy> copies;
        for (int k = 0; k < kBlocksEach; ++k) copies.push_back({i * kBlocksEach + k, k});
        (*transfer)->Send(copies);
        transfers[i] = std::move(*transfer);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < kTransfers; ++i) {
    ASSERT_NE(transfers[i], nullptr);
    auto status = FinishAndWait(*transfers[i], kWait);
    ASSERT_TRUE(status.has_value()) << i;
    ASSERT_TRUE(status->ok()) << i << ": " << *status;
  }
  for (int i = 0; i < kTransfers; ++i) {
    for (int k = 0; k < kBlocksEach; ++k) {
      EXPECT_TRUE(BlockEquals(*src, i * kBlocksEach + k, *dst, dst_blocks[i][k])) << i << "/" << k;
    }
  }
  for (int b = 0; b < 8; ++b) EXPECT_TRUE(BlockIsByte(*dst, b, 0xEE)) << b;
  EXPECT_EQ(handler.starts(), kTransfers);
  EXPECT_EQ(handler.ends(), kTransfers);
  EXPECT_EQ(handler.pinned(), 0);
}

TEST_P(KvTransportConformanceTest, BadBlockCopyFailsTheTransferAndUnpins) {
  auto src = MakeCache(SmallLayout(), 4);
  auto dst = MakeCache(SmallLayout(), 4);
  RecordingLeaseHandler handler;
  auto prefill = Make("prefill-0", *src);
  auto decode = Make("decode-0", *dst, &handler);
  auto out_of_cache = prefill->StartTransfer(
      Destination(decode->local_endpoint(), "lease-oob", {0, 99}), absl::Now() + kWait);
  if (out_of_cache.ok()) {  // the in-process transport learns the size at the handshake
    (*out_of_cache)->Send(std::vector<BlockCopy>{{0, 0}});
    auto status = FinishAndWait(**out_of_cache, kWait);
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(status->code(), absl::StatusCode::kInvalidArgument) << *status;
  } else {
    EXPECT_EQ(out_of_cache.status().code(), absl::StatusCode::kInvalidArgument);
  }
  auto transfer = prefill->StartTransfer(
      Destination(decode->local_endpoint(), "lease-bad", {0, 1}), absl::Now() + kWait);
  ASSERT_TRUE(transfer.ok());
  ASSERT_TRUE(handler.WaitStarted("lease-bad", kWait));
  (*transfer)->Send(std::vector<BlockCopy>{{0, 5}});  // index beyond the lease
  auto status = FinishAndWait(**transfer, kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kInvalidArgument) << *status;
  auto ended = handler.WaitEnded("lease-bad", kWait);
  ASSERT_TRUE(ended.has_value());
  EXPECT_FALSE(ended->ok());
}

}  // namespace
}  // namespace tandem::transfer::testing
