// What CudaIpcKvTransport publishes and says on its control channel, and the host-side helpers
// around it (block-run coalescing, framed messages on a stream socket). Pure host code: no CUDA
// here, so all of it is unit-tested on machines without a GPU.
//
// Control protocol, one Unix stream connection per transfer (sender = prefill, receiver = decode):
//   sender -> receiver  kBegin     layout, the epoch it expects, lease id, block count, time left
//   receiver -> sender  kBeginAck  OK (the lease is pinned) or the refusal (layout fields named,
//                                  stale epoch, lease handler's answer)
//   ... the sender copies blocks into the receiver's exported pool (CUDA IPC, no message) ...
//   sender -> receiver  kEnd       OK + blocks written (after its copy stream synchronized), or
//                                  the error that ended it (also after synchronizing)
//   receiver -> sender  kEndAck    OK once TransferEnded(lease, OK) has returned
// A frame is a 4-byte little-endian length followed by the message; the first message byte is its
// type. Every decoder checks lengths: malformed input is an error, never a crash.
// Thread-safety: plain functions and values.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/kv_transport.h"

namespace tandem::transfer::cuda_ipc {

inline constexpr std::string_view kAddressPrefix = "cudaipc1:";
inline constexpr size_t kIpcHandleBytes = 64;  // sizeof(cudaIpcMemHandle_t)
inline constexpr uint32_t kMaxFrameBytes = 16u << 20;

// Everything a process on the same node needs to write the owner's device KV pool
// (KvEndpoint::address holds it as kAddressPrefix + lowercase hex of the binary form).
struct EndpointAddress {
  uint64_t epoch = 0;
  uint64_t process_nonce = 0;  // random per process: equal means "the same process"
  std::string boot_id;         // /proc/sys/kernel/random/boot_id: equal means "the same node"
  std::string socket_path;     // the control channel (Unix stream socket)
  std::string ipc_handle;      // cudaIpcMemHandle_t of the allocation holding the pool (64 bytes)
  uint64_t alloc_offset = 0;   // block 0 = opened allocation base + alloc_offset
  uint64_t owner_pointer = 0;  // block 0 in the owner's address space (same-process shortcut)
  int32_t device = -1;         // owner's CUDA device ordinal (informational)
  int64_t num_blocks = 0;
  int64_t bytes_per_block = 0;
};
std::string EncodeEndpointAddress(const EndpointAddress& a);
absl::StatusOr<EndpointAddress> DecodeEndpointAddress(std::string_view text);

enum class MessageType : uint8_t { kBegin = 1, kBeginAck = 2, kEnd = 3, kEndAck = 4 };

struct Begin {
  uint64_t expected_epoch = 0;
  KvLayoutInfo layout;
  std::string sender_worker_id;
  std::string lease_id;
  int32_t num_blocks = 0;
  int64_t remaining_ms = 0;  // time left to the sender's deadline (clocks are not compared)
};

struct Ack {
  MessageType type = MessageType::kBeginAck;  // kBeginAck or kEndAck
  absl::Status status;
};

struct End {
  absl::Status status;  // OK: every block was written and the copy stream synchronized
  int64_t blocks_written = 0;
};

std::string Encode(const Begin& m);
std::string Encode(const Ack& m);
std::string Encode(const End& m);
absl::StatusOr<MessageType> PeekType(std::string_view payload);
absl::StatusOr<Begin> DecodeBegin(std::string_view payload);
absl::StatusOr<Ack> DecodeAck(std::string_view payload);
absl::StatusOr<End> DecodeEnd(std::string_view payload);

// A run of `count` consecutive source blocks going to consecutive destination blocks: one copy.
struct BlockRun {
  int32_t src_block = 0;
  int32_t dst_block = 0;
  int32_t count = 0;
  bool operator==(const BlockRun&) const = default;
};
// Maps each copy's logical index through `destination_blocks` and merges neighbours that are
// contiguous on both sides (order kept). The caller has validated the indices.
std::vector<BlockRun> CoalesceCopies(std::span<const BlockCopy> copies,
                                     std::span<const int32_t> destination_blocks);

// Blocking framed I/O on a stream socket, bounded by `deadline` (DEADLINE_EXCEEDED past it,
// UNAVAILABLE when the peer closed or the socket failed).
absl::Status WriteFrame(int fd, std::string_view payload, absl::Time deadline);
absl::StatusOr<std::string> ReadFrame(int fd, absl::Time deadline);

// Connects to a Unix stream socket at `path` (UNAVAILABLE if nobody listens there).
absl::StatusOr<int> ConnectUnix(const std::string& path);
// Listens on a Unix stream socket at `path` (replacing a stale file there).
absl::StatusOr<int> ListenUnix(const std::string& path);

// This process's random nonce and the node's boot id (cached after the first call).
uint64_t ProcessNonce();
const std::string& BootId();

}  // namespace tandem::transfer::cuda_ipc
