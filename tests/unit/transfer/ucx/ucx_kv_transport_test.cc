// UCX-specific behaviour, with the peer in another process (ucx_transfer_peer): a receiver
// killed while puts are in flight, a sender killed or frozen mid-transfer.
#include <signal.h>
#include <sys/resource.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "transfer/ucx/ucx_kv_transport.h"
#include "unit/transfer/transfer_test_util.h"

namespace tandem::transfer {
namespace {

using ::testing::HasSubstr;
using namespace tandem::transfer::testing;

std::unique_ptr<UcxKvTransport> MakeUcx(const std::string& id, const TestCache& cache,
                                        const KvLayoutInfo& layout, KvLeaseHandler* handler,
                                        absl::Duration lease_grace = absl::Seconds(5),
                                        UcxDataPath path = UcxDataPath::kActiveMessage) {
  UcxKvTransportOptions o = TestUcxOptions(id, cache.get(), layout, handler);
  o.lease_grace = lease_grace;
  o.data_path = path;
  auto t = UcxKvTransport::Create(o);
  EXPECT_TRUE(t.ok()) << t.status();
  return std::move(t).value();
}

std::vector<std::string> PeerArgs(std::vector<std::string> args) {
  args.insert(args.begin(), TANDEM_UCX_PEER_BINARY);
  return args;
}

TEST(UcxKvTransportTest, EndpointAddressIsPrintableAndCarriesTheEpoch) {
  TestCache cache = MakeCache(SmallLayout(), 4);
  auto t = MakeUcx("decode-0", cache, SmallLayout(), nullptr);
  const KvEndpoint& e = t->local_endpoint();
  EXPECT_EQ(e.worker_id, "decode-0");
  EXPECT_NE(e.epoch, 0u);
  EXPECT_THAT(e.address, ::testing::StartsWith("ucx1:"));
  EXPECT_TRUE(e.layout == SmallLayout());
  auto other = MakeUcx("decode-1", cache, SmallLayout(), nullptr);
  EXPECT_NE(other->local_endpoint().epoch, e.epoch);
}

TEST(UcxKvTransportTest, MalformedAddressFailsAtOnce) {
  TestCache cache = MakeCache(SmallLayout(), 4);
  auto t = MakeUcx("prefill-0", cache, SmallLayout(), nullptr);
  KvEndpoint e = t->local_endpoint();
  e.address = "ucx1:garbage";
  auto transfer = t->StartTransfer(Destination(e, "lease", {0}), absl::Now() + absl::Seconds(1));
  ASSERT_FALSE(transfer.ok());
  EXPECT_EQ(transfer.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(UcxKvTransportTest, ManySequentialTransfersOverOneConnection) {
  TestCache src = MakeCache(SmallLayout(), 8);
  TestCache dst = MakeCache(SmallLayout(), 8);
  FillRandom(src, 11);
  RecordingLeaseHandler handler;
  auto prefill = MakeUcx("prefill-0", src, SmallLayout(), nullptr);
  auto decode = MakeUcx("decode-0", dst, SmallLayout(), &handler);
  for (int i = 0; i < 50; ++i) {
    auto t = prefill->StartTransfer(
        Destination(decode->local_endpoint(), "lease-" + std::to_string(i), {i % 8}),
        absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(t.ok());
    (*t)->Send(std::vector<BlockCopy>{{(i + 3) % 8, 0}});
    auto status = FinishAndWait(**t, absl::Seconds(10));
    ASSERT_TRUE(status.has_value());
    ASSERT_TRUE(status->ok()) << *status;
    EXPECT_TRUE(BlockEquals(src, (i + 3) % 8, dst, i % 8));
  }
  EXPECT_EQ(handler.ends(), 50);
}

TEST(UcxKvTransportTest, IdleTransportsDoNotSpin) {
  TestCache src = MakeCache(SmallLayout(), 4);
  TestCache dst = MakeCache(SmallLayout(), 4);
  RecordingLeaseHandler handler;
  auto prefill = MakeUcx("prefill-0", src, SmallLayout(), nullptr);
  auto decode = MakeUcx("decode-0", dst, SmallLayout(), &handler);
  auto t = prefill->StartTransfer(Destination(decode->local_endpoint(), "lease", {0}),
                                  absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(t.ok());
  (*t)->Send(std::vector<BlockCopy>{{0, 0}});
  ASSERT_TRUE(FinishAndWait(**t, absl::Seconds(10)).value_or(absl::UnknownError("")).ok());
  // Two progress threads with a connection between them, idle for a second.
  rusage before, after;
  getrusage(RUSAGE_SELF, &before);
  absl::SleepFor(absl::Seconds(1));
  getrusage(RUSAGE_SELF, &after);
  auto cpu = [](const rusage& r) {
    return absl::DurationFromTimeval(r.ru_utime) + absl::DurationFromTimeval(r.ru_stime);
  };
  EXPECT_LT(cpu(after) - cpu(before), absl::Milliseconds(200));
}

TEST(UcxKvTransportTest, SenderHitsItsDeadlineWhenTheReceiverIsFrozen) {
  auto child = ChildProcess::Spawn(PeerArgs({"receiver", "small", "8"}));
  auto endpoint_arg = child->WaitFor("endpoint ", absl::Seconds(20));
  ASSERT_TRUE(endpoint_arg.has_value()) << "the receiver process did not start";
  kill(child->pid(), SIGSTOP);  // its sockets accept, nobody answers
  TestCache src = MakeCache(SmallLayout(), 8);
  auto prefill = MakeUcx("prefill-0", src, SmallLayout(), nullptr);
  const absl::Time start = absl::Now();
  auto t = prefill->StartTransfer(
      Destination(EndpointFromArg(*endpoint_arg, SmallLayout()), "lease-cold", {0, 1}),
      start + absl::Seconds(1));
  ASSERT_TRUE(t.ok());
  (*t)->Send(std::vector<BlockCopy>{{0, 0}, {1, 1}});
  auto status = FinishAndWait(**t, absl::Seconds(10));
  ASSERT_TRUE(status.has_value()) << "Finish hung";
  EXPECT_EQ(status->code(), absl::StatusCode::kDeadlineExceeded) << *status;
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(1500));
  child->Kill9();
}

// Killing the receiver while its blocks are in flight, for both data paths (the receiver
// process takes either).
class ReceiverKilledTest : public ::testing::TestWithParam<UcxDataPath> {};

TEST_P(ReceiverKilledTest, SenderFailsCleanlyWhenTheReceiverProcessIsKilledMidTransfer) {
  constexpr int kBlocks = 64;  // 23.6 MB of SmolLM2-shaped KV per round
  auto child = ChildProcess::Spawn(PeerArgs({"receiver", "smollm2", std::to_string(kBlocks)}));
  auto endpoint_arg = child->WaitFor("endpoint ", absl::Seconds(20));
  ASSERT_TRUE(endpoint_arg.has_value()) << "the receiver process did not start";
  const KvEndpoint endpoint = EndpointFromArg(*endpoint_arg, SmolLm2Layout());

  TestCache src = MakeCache(SmolLm2Layout(), kBlocks);
  FillRandom(src, 5);
  auto prefill = MakeUcx("prefill-0", src, SmolLm2Layout(), nullptr, absl::Seconds(5), GetParam());
  std::vector<int32_t> dst(kBlocks);
  std::vector<BlockCopy> copies;
  for (int i = 0; i < kBlocks; ++i) {
    dst[i] = i;
    copies.push_back({i, i});
  }
  const absl::Duration deadline = absl::Seconds(30);
  auto transfer = prefill->StartTransfer(Destination(endpoint, "lease-victim", dst),
                                         absl::Now() + deadline);
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  (*transfer)->Send(std::span(copies).first(8));
  ASSERT_TRUE(child->WaitFor("started lease-victim", absl::Seconds(20)).has_value());
  // Keep the progress thread busy with puts, and kill the receiver while they run.
  for (int round = 0; round < 4; ++round) (*transfer)->Send(copies);
  child->Kill9();
  for (int round = 0; round < 2; ++round) (*transfer)->Send(copies);
  const absl::Time killed = absl::Now();
  auto status = FinishAndWait(**transfer, deadline + absl::Seconds(5));
  ASSERT_TRUE(status.has_value()) << "Finish hung";
  EXPECT_FALSE(status->ok());
  EXPECT_EQ(status->code(), absl::StatusCode::kUnavailable) << *status;
  // Noticed as a dead peer (not merely by running into the 30 s deadline).
  EXPECT_LT(absl::Now() - killed, absl::Seconds(10));

  // The transport stays usable: a fresh receiver gets a full transfer.
  auto child2 = ChildProcess::Spawn(PeerArgs({"receiver", "smollm2", std::to_string(kBlocks)}));
  auto endpoint2 = child2->WaitFor("endpoint ", absl::Seconds(20));
  ASSERT_TRUE(endpoint2.has_value());
  auto again = prefill->StartTransfer(
      Destination(EndpointFromArg(*endpoint2, SmolLm2Layout()), "lease-next", {0, 1}),
      absl::Now() + absl::Seconds(20));
  ASSERT_TRUE(again.ok());
  (*again)->Send(std::vector<BlockCopy>{{0, 0}, {1, 1}});
  status = FinishAndWait(**again, absl::Seconds(25));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->ok()) << *status;
  EXPECT_TRUE(child2->WaitFor("ended lease-next 0", absl::Seconds(5)).has_value());
}

INSTANTIATE_TEST_SUITE_P(DataPaths, ReceiverKilledTest,
                         ::testing::Values(UcxDataPath::kActiveMessage, UcxDataPath::kRmaPut),
                         [](const auto& info) {
                           return info.param == UcxDataPath::kRmaPut ? "RmaPut" : "ActiveMessage";
                         });

// (The sender side is killed with the default data path only: UCX 1.13 emulates RMA over TCP
// with active messages whose target side aborts the receiving process when the sender dies,
// which is why kActiveMessage is the default; see ucx_kv_transport.h.)
TEST(UcxKvTransportTest, ReceiverEndsTheLeaseWhenTheSenderProcessIsKilled) {
  constexpr int kBlocks = 32;
  TestCache dst = MakeCache(SmolLm2Layout(), kBlocks);
  RecordingLeaseHandler handler;
  // A long grace: only noticing the dead sender can end the lease in time.
  auto decode = MakeUcx("decode-0", dst, SmolLm2Layout(), &handler, absl::Seconds(60));
  auto child = ChildProcess::Spawn(PeerArgs({"sender", "smollm2", std::to_string(kBlocks),
                                             EndpointToArg(decode->local_endpoint()),
                                             "lease-orphan", "60000"}));
  ASSERT_TRUE(handler.WaitStarted("lease-orphan", absl::Seconds(20)));
  ASSERT_TRUE(child->WaitFor("sent ", absl::Seconds(20)).has_value());
  child->Kill9();
  const absl::Time killed = absl::Now();
  auto ended = handler.WaitEnded("lease-orphan", absl::Seconds(15));
  ASSERT_TRUE(ended.has_value()) << "the lease stayed pinned after the sender died";
  EXPECT_EQ(ended->code(), absl::StatusCode::kUnavailable) << *ended;
  EXPECT_THAT(std::string(ended->message()), HasSubstr("sender-child"));
  EXPECT_LT(absl::Now() - killed, absl::Seconds(10));
  EXPECT_EQ(handler.ended_count("lease-orphan"), 1);
}

TEST(UcxKvTransportTest, ReceiverEndsTheLeaseOfAFrozenSenderAfterItsDeadline) {
  TestCache dst = MakeCache(SmallLayout(), 8);
  RecordingLeaseHandler handler;
  auto decode = MakeUcx("decode-0", dst, SmallLayout(), &handler, absl::Milliseconds(500));
  auto child = ChildProcess::Spawn(PeerArgs({"sender", "small", "8",
                                             EndpointToArg(decode->local_endpoint()),
                                             "lease-frozen", "1000"}));
  ASSERT_TRUE(handler.WaitStarted("lease-frozen", absl::Seconds(20)));
  ASSERT_TRUE(child->WaitFor("sent ", absl::Seconds(20)).has_value());
  kill(child->pid(), SIGSTOP);  // alive but silent: it will never send the end
  auto ended = handler.WaitEnded("lease-frozen", absl::Seconds(10));
  ASSERT_TRUE(ended.has_value()) << "the lease stayed pinned";
  EXPECT_EQ(ended->code(), absl::StatusCode::kDeadlineExceeded) << *ended;
  child->Kill9();
}

}  // namespace
}  // namespace tandem::transfer
