// The host-side pieces of the CUDA IPC medium: the endpoint address it publishes, block-run
// coalescing, and framed messages on a Unix stream socket (its control channel carries the
// protocol's messages of transfer/protocol/wire.h, one per frame). No CUDA here, so all of it is
// unit-tested on machines without a GPU.
//
// A frame is a 4-byte little-endian length followed by the message. Every decoder checks lengths:
// malformed input is an error, never a crash.
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
#include "transfer/protocol/medium.h"

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

// A run of `count` consecutive source blocks going to consecutive destination blocks: one copy.
struct BlockRun {
  int32_t src_block = 0;
  int32_t dst_block = 0;
  int32_t count = 0;
  bool operator==(const BlockRun&) const = default;
};
// Merges neighbouring writes that are contiguous on both sides (order kept).
std::vector<BlockRun> CoalesceWrites(std::span<const BlockWrite> writes);

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
