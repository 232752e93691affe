// CudaIpcKvTransport on a real GPU: a second process (cuda_ipc_transfer_peer) writes this process's
// device pool over CUDA IPC; refusals (stale epoch, layout), lease expiry and sender death; and the
// same-process path. Skips without a device; TANDEM_REQUIRE_GPU=1 makes that a failure.
#include "transfer/cuda_ipc/cuda_ipc_kv_transport.h"

#include <csignal>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "common/child_process.h"
#include "gpu_transfer/gpu_test_util.h"
#include "gtest/gtest.h"
#include "transfer/cuda_ipc/cuda_ipc_wire.h"
#include "unit/transfer/transfer_test_util.h"

namespace tandem::transfer {
namespace {

using gpu_testing::DeviceKvCache;
using testing::RecordingLeaseHandler;

constexpr int64_t kPoolBlocks = 32;
constexpr uint64_t kPeerSeed = 7;  // cuda_ipc_transfer_peer's source pattern
constexpr uint8_t kGuard = 0xa5;

std::string Join(const std::vector<int32_t>& v) {
  std::string out;
  for (int32_t b : v) {
    if (!out.empty()) out.push_back(',');
    out.append(std::to_string(b));
  }
  return out;
}

class CudaIpcTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TANDEM_REQUIRE_DEVICE_OR_SKIP();
    auto cache = DeviceKvCache::Create(gpu_testing::TestLayout(), kPoolBlocks);
    ASSERT_TRUE(cache.ok()) << cache.status();
    pool_ = std::move(*cache);
    ASSERT_TRUE(pool_->FillByte(kGuard).ok());
  }

  std::unique_ptr<CudaIpcKvTransport> MakeReceiver(absl::Duration grace = absl::Seconds(5)) {
    CudaIpcKvTransportOptions o;
    o.cache = pool_.get();
    o.layout = gpu_testing::TestLayout();
    o.worker_id = "decode-test";
    o.lease_handler = &handler_;
    o.lease_grace = grace;
    auto t = CudaIpcKvTransport::Create(o);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(*t) : nullptr;
  }

  std::unique_ptr<ChildProcess> SpawnPeer(const KvEndpoint& e, uint64_t epoch,
                                          const std::string& lease,
                                          const std::vector<int32_t>& blocks, int64_t deadline_ms,
                                          const std::string& mode) {
    auto child = ChildProcess::Spawn({TANDEM_CUDA_IPC_PEER, e.worker_id, std::to_string(epoch),
                                      e.address, lease, Join(blocks),
                                      std::to_string(deadline_ms), mode});
    EXPECT_TRUE(child.ok()) << child.status();
    return child.ok() ? std::move(*child) : nullptr;
  }

  // The next line starting with `prefix` (peer errors fail the test).
  static std::string Expect(ChildProcess& child, const std::string& prefix) {
    while (true) {
      auto line = child.ReadLine(absl::Seconds(60));
      if (!line.ok()) return "<" + line.status().ToString() + ">";
      if (line->rfind(prefix, 0) == 0) return *line;
      if (line->rfind("error", 0) == 0) return *line;
    }
  }

  void ExpectBlockIs(int32_t dst, int64_t src) {
    auto got = pool_->ReadBlock(dst);
    ASSERT_TRUE(got.ok()) << got.status();
    const std::vector<uint8_t> want =
        gpu_testing::Pattern(kPeerSeed, src, pool_->layout().bytes_per_block());
    EXPECT_TRUE(*got == want) << "destination block " << dst << " differs from source " << src;
  }

  void ExpectBlockUntouched(int32_t dst) {
    auto got = pool_->ReadBlock(dst);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(*got == std::vector<uint8_t>(got->size(), kGuard)) << "block " << dst << " written";
  }

  std::unique_ptr<DeviceKvCache> pool_;
  RecordingLeaseHandler handler_;
};

TEST_F(CudaIpcTransportTest, SecondProcessHandsOffBlocksByteIdentical) {
  auto receiver = MakeReceiver();
  ASSERT_NE(receiver, nullptr);
  // Runs and singletons: 3,4,5 coalesce; 9; 0,1 coalesce; 20.
  const std::vector<int32_t> blocks = {3, 4, 5, 9, 0, 1, 20};
  auto peer = SpawnPeer(receiver->local_endpoint(), receiver->local_endpoint().epoch, "lease-a",
                        blocks, 30'000, "finish");
  ASSERT_NE(peer, nullptr);
  EXPECT_EQ(Expect(*peer, "finished"), "finished 0 OK");
  auto ended = handler_.WaitEnded("lease-a", absl::Seconds(10));
  ASSERT_TRUE(ended.has_value());
  EXPECT_TRUE(ended->ok()) << *ended;
  for (size_t i = 0; i < blocks.size(); ++i) ExpectBlockIs(blocks[i], static_cast<int64_t>(i));
  for (int32_t b : {2, 6, 8, 10, 19, 21, 31}) ExpectBlockUntouched(b);
  EXPECT_EQ(handler_.pinned(), 0);
  EXPECT_EQ(handler_.ended_count("lease-a"), 1);
}

TEST_F(CudaIpcTransportTest, StaleEpochIsRefusedBeforeAnyWrite) {
  auto receiver = MakeReceiver();
  ASSERT_NE(receiver, nullptr);
  // An endpoint of another incarnation that reaches this socket: its epoch (in the endpoint and in
  // the address, whose IPC handle belongs to it) is not ours.
  KvEndpoint stale = receiver->local_endpoint();
  auto address = cuda_ipc::DecodeEndpointAddress(stale.address);
  ASSERT_TRUE(address.ok()) << address.status();
  address->epoch = stale.epoch + 1;
  stale.address = cuda_ipc::EncodeEndpointAddress(*address);
  auto peer = SpawnPeer(stale, stale.epoch + 1, "lease-stale", {0, 1}, 30'000, "finish");
  ASSERT_NE(peer, nullptr);
  const std::string line = Expect(*peer, "finished");
  EXPECT_EQ(line.rfind("finished 9 ", 0), 0u) << line;  // FAILED_PRECONDITION
  EXPECT_NE(line.find("epoch"), std::string::npos) << line;
  EXPECT_EQ(handler_.starts(), 0);
  ExpectBlockUntouched(0);
  ExpectBlockUntouched(1);
}

TEST_F(CudaIpcTransportTest, LayoutMismatchIsRefusedByTheDestination) {
  auto receiver = MakeReceiver();
  ASSERT_NE(receiver, nullptr);
  auto peer = SpawnPeer(receiver->local_endpoint(), receiver->local_endpoint().epoch,
                        "lease-layout", {0, 1}, 30'000, "lie_layout");
  ASSERT_NE(peer, nullptr);
  const std::string line = Expect(*peer, "finished");
  EXPECT_EQ(line.rfind("finished 9 ", 0), 0u) << line;
  EXPECT_NE(line.find("model"), std::string::npos) << line;  // the differing field is named
  EXPECT_EQ(handler_.starts(), 0);
  ExpectBlockUntouched(0);
}

TEST_F(CudaIpcTransportTest, StoppedSenderLeaseExpiresAfterDeadlinePlusGrace) {
  auto receiver = MakeReceiver(absl::Milliseconds(500));
  ASSERT_NE(receiver, nullptr);
  auto peer = SpawnPeer(receiver->local_endpoint(), receiver->local_endpoint().epoch,
                        "lease-hang", {0, 1, 2}, 1'000, "hang");
  ASSERT_NE(peer, nullptr);
  ASSERT_EQ(Expect(*peer, "sent"), "sent 3");
  ASSERT_TRUE(handler_.WaitStarted("lease-hang", absl::Seconds(10)));
  peer->Signal(SIGSTOP);  // neither kEnd nor a closed socket will come
  const absl::Time stopped = absl::Now();
  auto ended = handler_.WaitEnded("lease-hang", absl::Seconds(20));
  peer->Signal(SIGKILL);
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->code(), absl::StatusCode::kDeadlineExceeded) << *ended;
  EXPECT_LT(absl::Now() - stopped, absl::Seconds(10));
  EXPECT_EQ(handler_.pinned(), 0);
}

TEST_F(CudaIpcTransportTest, KilledSenderUnpinsLeaseAtOnce) {
  auto receiver = MakeReceiver(absl::Seconds(60));
  ASSERT_NE(receiver, nullptr);
  auto peer = SpawnPeer(receiver->local_endpoint(), receiver->local_endpoint().epoch,
                        "lease-kill", {4, 5}, 60'000, "hang");
  ASSERT_NE(peer, nullptr);
  ASSERT_EQ(Expect(*peer, "sent"), "sent 2");
  ASSERT_TRUE(handler_.WaitStarted("lease-kill", absl::Seconds(10)));
  peer->Signal(SIGKILL);
  auto ended = handler_.WaitEnded("lease-kill", absl::Seconds(20));  // far below the 60 s grace
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->code(), absl::StatusCode::kUnavailable) << *ended;
  EXPECT_EQ(handler_.ended_count("lease-kill"), 1);
}

// Two transports in one process: the endpoint's process nonce selects the direct pointer.
class CudaIpcSameProcessTest : public CudaIpcTransportTest {
 protected:
  void SetUp() override {
    CudaIpcTransportTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto src = DeviceKvCache::Create(gpu_testing::TestLayout(), 8);
    ASSERT_TRUE(src.ok()) << src.status();
    source_ = std::move(*src);
    ASSERT_TRUE(source_->FillPattern(kPeerSeed).ok());
    receiver_ = MakeReceiver(absl::Milliseconds(500));
    ASSERT_NE(receiver_, nullptr);
    CudaIpcKvTransportOptions o;
    o.cache = source_.get();
    o.layout = gpu_testing::TestLayout();
    o.worker_id = "prefill-test";
    auto t = CudaIpcKvTransport::Create(o);
    ASSERT_TRUE(t.ok()) << t.status();
    sender_ = std::move(*t);
  }

  std::unique_ptr<DeviceKvCache> source_;
  std::unique_ptr<CudaIpcKvTransport> receiver_;
  std::unique_ptr<CudaIpcKvTransport> sender_;
};

TEST_F(CudaIpcSameProcessTest, TransfersAndRecordsTheLease) {
  auto t = sender_->StartTransfer(
      testing::Destination(receiver_->local_endpoint(), "lease-local", {10, 11, 30}),
      absl::Now() + absl::Seconds(30));
  ASSERT_TRUE(t.ok()) << t.status();
  const std::vector<BlockCopy> copies = {{0, 0}, {1, 1}, {5, 2}};
  (*t)->Send(copies);
  auto status = testing::FinishAndWait(**t, absl::Seconds(30));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->ok()) << *status;
  // The lease was recorded before Finish's callback.
  EXPECT_EQ(handler_.ended_count("lease-local"), 1);
  ExpectBlockIs(10, 0);
  ExpectBlockIs(11, 1);
  ExpectBlockIs(30, 5);
  ExpectBlockUntouched(12);
}

TEST_F(CudaIpcSameProcessTest, LocalLayoutMismatchFailsAtOnce) {
  KvEndpoint e = receiver_->local_endpoint();
  e.layout.layout.head_dim = 128;
  auto t = sender_->StartTransfer(testing::Destination(e, "lease-x", {0}),
                                  absl::Now() + absl::Seconds(5));
  EXPECT_EQ(t.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(t.status().message().find("head_dim"), absl::string_view::npos) << t.status();
}

TEST_F(CudaIpcSameProcessTest, DroppedTransferUnpinsTheLease) {
  {
    auto t = sender_->StartTransfer(
        testing::Destination(receiver_->local_endpoint(), "lease-drop", {0, 1}),
        absl::Now() + absl::Seconds(30));
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE(handler_.WaitStarted("lease-drop", absl::Seconds(10)));
  }  // destroyed without Finish
  auto ended = handler_.WaitEnded("lease-drop", absl::Seconds(10));
  ASSERT_TRUE(ended.has_value());
  EXPECT_FALSE(ended->ok());
  EXPECT_EQ(handler_.pinned(), 0);
}

TEST_F(CudaIpcSameProcessTest, DeadlineWithoutFinishFailsBothSides) {
  auto t = sender_->StartTransfer(
      testing::Destination(receiver_->local_endpoint(), "lease-late", {0}),
      absl::Now() + absl::Milliseconds(300));
  ASSERT_TRUE(t.ok()) << t.status();
  auto ended = handler_.WaitEnded("lease-late", absl::Seconds(10));
  ASSERT_TRUE(ended.has_value());
  EXPECT_FALSE(ended->ok());
  auto status = testing::FinishAndWait(**t, absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kDeadlineExceeded) << *status;
}

TEST_F(CudaIpcSameProcessTest, RefusedLeaseFailsFinish) {
  handler_.Refuse("lease-no", absl::ResourceExhaustedError("no room"));
  auto t = sender_->StartTransfer(
      testing::Destination(receiver_->local_endpoint(), "lease-no", {0}),
      absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(t.ok()) << t.status();
  (*t)->Send(std::vector<BlockCopy>{{0, 0}});
  auto status = testing::FinishAndWait(**t, absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kResourceExhausted) << *status;
  ExpectBlockUntouched(0);
}

}  // namespace
}  // namespace tandem::transfer
