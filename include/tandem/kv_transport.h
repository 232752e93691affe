// Moving KV-cache blocks from a prefill worker into blocks reserved on a decode worker.
//
// The decode worker reserves blocks for a request under a lease and publishes where its cache
// can be written (KvEndpoint). The prefill worker opens a transfer to that lease (a handshake
// checks that both caches have the same layout and that the destination is still the process
// that granted the lease: its epoch), sends each finished chunk's blocks while the next chunk
// computes, and finishes: the transfer completes only when every byte is at the destination,
// and the destination learns that the lease now holds complete KV. A decode worker never
// adopts a lease whose transfer did not finish, so it never decodes from partial KV.
//
// Implementations (src/transfer): one hand-off protocol (transfer/protocol/) over several media:
// UCX (TCP, shared memory and RDMA verbs; the cross-host default), CUDA IPC (GPU caches on one
// node), staged (GPU caches over UCX through pinned host memory) and an in-process one for tests;
// transfer/transport_registry.h makes one by name. Thread-safety: every method may be called
// from any thread; callbacks run on a transport thread and must not block.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/kv_cache_storage.h"
#include "types/kv_layout.h"

namespace tandem {

// Where a decode worker's cache can be written.
struct KvEndpoint {
  std::string worker_id;
  uint64_t epoch = 0;    // chosen at random when the process starts
  std::string address;   // transport-specific, opaque to everyone else
  KvLayoutInfo layout;
};

// One request's destination: a lease of blocks on a decode worker.
struct KvDestination {
  KvEndpoint endpoint;
  std::string lease_id;
  std::string request_id;       // for log lines on both sides (request=<id>)
  std::vector<int32_t> blocks;  // destination block of the request's logical block i
};

// Copy the local block `src_block` into the destination's logical block `index`.
struct BlockCopy {
  int32_t src_block = 0;
  int32_t index = 0;
};

// One request's outbound KV. Thread-safe. Destroying it aborts an unfinished transfer.
class KvTransfer {
 public:
  virtual ~KvTransfer() = default;
  // Queues writes and returns at once; they proceed in the background.
  virtual void Send(std::span<const BlockCopy> copies) = 0;
  // Calls `done` once every queued write is complete at the destination and the destination
  // has recorded the lease as filled; with an error (and the lease left unfilled) if anything
  // failed or the deadline passed. Send must not be called after Finish.
  virtual void Finish(std::function<void(absl::Status)> done) = 0;
};

// The decode side's view of its leases, consulted by the transport.
class KvLeaseHandler {
 public:
  virtual ~KvLeaseHandler() = default;
  // A peer wants to write `lease_id` at `blocks` (the destination of logical block i): OK pins
  // the lease (it cannot expire until TransferEnded). Refused unless `blocks` are the lease's
  // own, in its order (a sender never chooses where it writes).
  virtual absl::Status TransferStarting(const std::string& lease_id, std::span<const int32_t> blocks) = 0;
  // The transfer ended: `status` OK means every block sent arrived; `filled_blocks` is how many
  // of the lease's blocks, from the first, now hold the sender's KV.
  virtual void TransferEnded(const std::string& lease_id, const absl::Status& status, int32_t filled_blocks) = 0;
};

class KvTransport {
 public:
  virtual ~KvTransport() = default;
  virtual std::string_view name() const = 0;
  // Where peers can write this worker's cache (decode and mixed roles).
  virtual const KvEndpoint& local_endpoint() const = 0;
  // Starts a transfer into `destination`; the handshake happens in the background and its
  // failure surfaces in Finish. Fails at once for a layout mismatch known locally.
  virtual absl::StatusOr<std::unique_ptr<KvTransfer>> StartTransfer(const KvDestination& destination,
                                                                    absl::Time deadline) = 0;
};

}  // namespace tandem
