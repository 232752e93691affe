// CudaIpcKvTransport: KV blocks moved between two worker processes on one GPU node with no host
// copy. The decode side exports its device KV pool once (cudaIpcGetMemHandle); the prefill side
// opens it (cudaIpcOpenMemHandle, cached per destination worker and epoch) and copies blocks
// device-to-device with cudaMemcpyAsync on a stream of its own.
//
// Control channel: a Unix stream socket per decode worker (socket_dir/tandem-kv-<worker>-<epoch>),
// one connection per transfer, the messages of cuda_ipc_wire.h. A small channel of its own rather
// than UCX's control messages: UCX's sender/receiver are written around host-memory blocks and
// would need a "control only" mode inside them, while this needs four messages and one round trip
// at each end. A connection is also what tells the decode side that its sender died (EOF).
//
//   * KvEndpoint::address: "cudaipc1:" + hex of {epoch, process nonce, node boot id, socket path,
//     IPC handle, offset of block 0 in the exported allocation, pool size}. StartTransfer refuses
//     at once an endpoint on another node (boot id) and a layout mismatch known locally.
//   * Per transfer, on a thread of the transport: connect, kBegin (layout + expected epoch + lease),
//     the receiver checks the layout (fields named on refusal) and the epoch (a restarted peer's
//     stale endpoint is refused before its handle is ever opened), then asks its KvLeaseHandler to
//     pin the lease; kBeginAck. Only then is the handle opened (or taken from the cache) and the
//     queued Sends copied: consecutive blocks that are consecutive at the destination too go in one
//     cudaMemcpyAsync. Finish synchronizes the copy stream, sends kEnd(OK, count), and the receiver
//     calls TransferEnded(lease, OK) before answering kEndAck; `done` fires after that answer.
//   * Failures (deadline, refusal, CUDA error, the handle dropped without Finish, shutdown): the
//     sender first synchronizes its copy stream, so no write is still running, then sends
//     kEnd(error) when the receiver is reachable; `done` gets the error.
//   * The receiver ends a pinned lease with an error when the connection drops before kEnd (the
//     sender died), when the lease outlives the sender's deadline plus `lease_grace`, or at
//     shutdown. TransferEnded is called exactly once per pinned lease.
//   * Opened mappings are cached per destination worker id (a new epoch replaces the old one once
//     no transfer uses it) and closed when their owner's control socket stops answering (checked
//     at most every 10 s from StartTransfer), so dead peers' pools are not kept mapped.
//   * Same process (mixed role, tests): the endpoint's process nonce equals ours, so the owner's
//     pointer is used directly (a CUDA IPC handle cannot be opened in the process that made it).
//
// Limits, stated plainly: CUDA IPC writes are one-sided, the receiver cannot vet them. A sender that
// dies with copies queued is torn down by the driver, but the receiver may see the socket close a
// moment before the driver has stopped those copies; and a sender stopped (SIGSTOP) for longer
// than lease_grace past its deadline could still write after the lease was ended. Keep lease_grace
// well above a stream synchronization; do not reuse failed leases' blocks before that much time.
// The pool must come from cudaMalloc (not cudaMallocAsync pools or cuMemCreate) to be exportable.
// Source blocks: Send records an event on the legacy default stream and the copies wait for it, so
// they follow every kernel this process queued before Send on the legacy stream or on blocking
// streams (the CUDA backend's stream is one: its KV writes may still be queued when a forward pass
// without logits returns). Work on non-blocking streams must be complete before Send. The blocks
// must stay unchanged until the Finish callback.
//
// Thread-safety: every method may be called from any thread; Finish's `done` and the lease handler
// run on transport threads and must not block. Ownership: the cache and the lease handler are not
// owned and must outlive the transport; destroy the transport from a thread that is not running
// one of its callbacks (the destructor joins them).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/kv_transport.h"

namespace tandem::transfer {

struct CudaIpcKvTransportOptions {
  KvCacheStorage* cache = nullptr;  // required, device memory (device_base(), device())
  KvLayoutInfo layout;              // must describe `cache`
  std::string worker_id;
  // Decode role: pins and unpins leases for inbound transfers; null: the pool is not exported and
  // no control socket is opened (prefill-only worker).
  KvLeaseHandler* lease_handler = nullptr;
  std::string socket_dir = "/tmp";  // where the control socket lives (shared by both processes)
  // A pinned lease is ended with DEADLINE_EXCEEDED this long after the sender's deadline.
  absl::Duration lease_grace = absl::Seconds(5);
  // How long a connection may take to say kBegin, and a sender to wait for an acknowledgement
  // (bounded by the transfer's deadline too).
  absl::Duration handshake_timeout = absl::Seconds(10);
  uint64_t epoch = 0;  // 0: random
};

class CudaIpcKvTransport final : public KvTransport {
 public:
  static absl::StatusOr<std::unique_ptr<CudaIpcKvTransport>> Create(
      const CudaIpcKvTransportOptions& options);
  // Fails running transfers (CANCELLED) and pinned leases (UNAVAILABLE), joins every transport
  // thread, closes opened IPC mappings and removes the control socket.
  ~CudaIpcKvTransport() override;

  std::string_view name() const override { return "cuda-ipc"; }
  const KvEndpoint& local_endpoint() const override { return endpoint_; }
  absl::StatusOr<std::unique_ptr<KvTransfer>> StartTransfer(const KvDestination& destination,
                                                            absl::Time deadline) override;

  struct Core;  // internal, shared with transfer handles

 private:
  explicit CudaIpcKvTransport(std::unique_ptr<Core> core);

  std::unique_ptr<Core> core_;
  KvEndpoint endpoint_;
};

}  // namespace tandem::transfer
