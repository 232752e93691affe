// Host-side pieces of the CUDA IPC medium: endpoint encoding, block-run coalescing and the framed
// socket I/O. No GPU needed. (Its control messages are the protocol's: protocol/wire_test.cc.)
#include "transfer/cuda_ipc/cuda_ipc_wire.h"

#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace tandem::transfer::cuda_ipc {
namespace {

EndpointAddress SampleAddress() {
  EndpointAddress a;
  a.epoch = 0x1234567890abcdefULL;
  a.process_nonce = 42;
  a.boot_id = "0f1e2d3c-boot";
  a.socket_path = "/tmp/tandem-kv-decode-0.sock";
  a.ipc_handle = std::string(kIpcHandleBytes, '\0');
  for (size_t i = 0; i < a.ipc_handle.size(); ++i) a.ipc_handle[i] = static_cast<char>(i * 7);
  a.alloc_offset = 4096;
  a.owner_pointer = 0x7f0000001000ULL;
  a.device = 3;
  a.num_blocks = 1000;
  a.bytes_per_block = 2 << 20;
  return a;
}

TEST(CudaIpcWireTest, EndpointAddressRoundTrips) {
  const EndpointAddress a = SampleAddress();
  const std::string text = EncodeEndpointAddress(a);
  ASSERT_EQ(text.rfind("cudaipc1:", 0), 0u);
  auto b = DecodeEndpointAddress(text);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->epoch, a.epoch);
  EXPECT_EQ(b->process_nonce, a.process_nonce);
  EXPECT_EQ(b->boot_id, a.boot_id);
  EXPECT_EQ(b->socket_path, a.socket_path);
  EXPECT_EQ(b->ipc_handle, a.ipc_handle);
  EXPECT_EQ(b->alloc_offset, a.alloc_offset);
  EXPECT_EQ(b->owner_pointer, a.owner_pointer);
  EXPECT_EQ(b->device, a.device);
  EXPECT_EQ(b->num_blocks, a.num_blocks);
  EXPECT_EQ(b->bytes_per_block, a.bytes_per_block);
}

TEST(CudaIpcWireTest, RejectsForeignAndDamagedAddresses) {
  EXPECT_FALSE(DecodeEndpointAddress("ucx1:AAAA").ok());  // another transport's endpoint
  EXPECT_FALSE(DecodeEndpointAddress("").ok());
  const std::string text = EncodeEndpointAddress(SampleAddress());
  EXPECT_FALSE(DecodeEndpointAddress(text.substr(0, text.size() - 2)).ok());  // truncated
  EXPECT_FALSE(DecodeEndpointAddress(text.substr(0, text.size() - 1)).ok());  // odd length
  EXPECT_FALSE(DecodeEndpointAddress(text + "00").ok());                      // trailing bytes
  std::string bad = text;
  bad[12] = 'z';
  EXPECT_FALSE(DecodeEndpointAddress(bad).ok());
  EndpointAddress short_handle = SampleAddress();
  short_handle.ipc_handle.resize(10);
  EXPECT_FALSE(DecodeEndpointAddress(EncodeEndpointAddress(short_handle)).ok());
  // Every truncation of the binary form is refused (never read past the end).
  for (size_t n = 9; n + 2 <= text.size(); n += 2) {
    EXPECT_FALSE(DecodeEndpointAddress(text.substr(0, n)).ok()) << n;
  }
}

// Writes of `copies` into a lease whose logical block i is destination block dst[i].
std::vector<BlockWrite> Writes(const std::vector<BlockCopy>& copies, const std::vector<int32_t>& dst) {
  std::vector<BlockWrite> writes;
  for (const BlockCopy& c : copies) writes.push_back({c.src_block, c.index, dst[c.index]});
  return writes;
}

TEST(CudaIpcWireTest, CoalescesRunsContiguousOnBothSides) {
  const std::vector<int32_t> dst = {10, 11, 12, 40, 41, 7};
  const std::vector<BlockCopy> copies = {{0, 0}, {1, 1}, {2, 2}, {3, 3}, {4, 4}, {9, 5}};
  const std::vector<BlockRun> runs = CoalesceWrites(Writes(copies, dst));
  const std::vector<BlockRun> want = {{0, 10, 3}, {3, 40, 2}, {9, 7, 1}};
  EXPECT_EQ(runs, want);
}

TEST(CudaIpcWireTest, CoalescingKeepsOrderAndSplitsOnSourceGaps) {
  const std::vector<int32_t> dst = {0, 1, 2, 3};
  const std::vector<BlockCopy> copies = {{5, 0}, {7, 1}, {8, 2}, {2, 3}};
  const std::vector<BlockRun> want = {{5, 0, 1}, {7, 1, 2}, {2, 3, 1}};
  EXPECT_EQ(CoalesceWrites(Writes(copies, dst)), want);
  EXPECT_TRUE(CoalesceWrites({}).empty());
}

TEST(CudaIpcWireTest, FramesCrossASocketAndTimeOut) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  const std::string big(1 << 20, 'k');  // larger than the socket buffer: written in pieces
  std::string got;
  std::thread reader([&] {
    auto f1 = ReadFrame(sv[1], absl::Now() + absl::Seconds(10));
    auto f2 = ReadFrame(sv[1], absl::Now() + absl::Seconds(10));
    if (f1.ok() && f2.ok()) got = *f1 + "|" + f2->substr(0, 3);
  });
  ASSERT_TRUE(WriteFrame(sv[0], "hello", absl::Now() + absl::Seconds(10)).ok());
  ASSERT_TRUE(WriteFrame(sv[0], big, absl::Now() + absl::Seconds(10)).ok());
  reader.join();
  EXPECT_EQ(got, "hello|kkk");
  // Nothing to read: the deadline ends the wait.
  auto timed_out = ReadFrame(sv[1], absl::Now() + absl::Milliseconds(50));
  EXPECT_EQ(timed_out.status().code(), absl::StatusCode::kDeadlineExceeded);
  // The peer closes: UNAVAILABLE, not a hang.
  ::close(sv[0]);
  auto closed = ReadFrame(sv[1], absl::Now() + absl::Seconds(5));
  EXPECT_EQ(closed.status().code(), absl::StatusCode::kUnavailable);
  ::close(sv[1]);
}

TEST(CudaIpcWireTest, OversizedFrameHeaderIsRefused) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  const char header[4] = {'\xff', '\xff', '\xff', '\x7f'};
  ASSERT_EQ(::write(sv[0], header, 4), 4);
  auto r = ReadFrame(sv[1], absl::Now() + absl::Seconds(5));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST(CudaIpcWireTest, UnixSocketConnectsAndRefusesMissingPath) {
  const std::string path = "/tmp/tandem-cuda-ipc-wire-test-" + std::to_string(::getpid()) + ".sock";
  auto listener = ListenUnix(path);
  ASSERT_TRUE(listener.ok()) << listener.status();
  auto client = ConnectUnix(path);
  ASSERT_TRUE(client.ok()) << client.status();
  ::close(*client);
  ::close(*listener);
  ::unlink(path.c_str());
  EXPECT_EQ(ConnectUnix(path).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(ListenUnix(std::string(200, 'x')).ok());  // longer than sun_path
}

TEST(CudaIpcWireTest, NodeAndProcessIdentityAreStable) {
  EXPECT_NE(ProcessNonce(), 0u);
  EXPECT_EQ(ProcessNonce(), ProcessNonce());
  EXPECT_EQ(BootId(), BootId());
}

}  // namespace
}  // namespace tandem::transfer::cuda_ipc
