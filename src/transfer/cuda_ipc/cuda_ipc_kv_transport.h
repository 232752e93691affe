// CudaIpcKvTransport: the KV hand-off protocol (transfer/protocol/) over the CUDA IPC medium
// (cuda_ipc_medium.h): KV blocks move between two worker processes on one GPU node
// device-to-device, with no host copy. The decode side exports its device KV pool once; the
// prefill side opens it (after the handshake accepted its epoch and the lease is pinned) and
// copies blocks with cudaMemcpyAsync (CudaPoolAccess); control messages travel on a Unix socket.
//
//   * Finish waits for the copies (stream synchronized), then the end message; the receiver
//     calls TransferEnded(lease, OK) before acknowledging, and `done` fires after that.
//   * Failures (deadline, refusal, CUDA error, the handle dropped without Finish, shutdown): the
//     sender first waits for its queued copies, so no write is still running, then tells the
//     receiver when it is reachable; `done` gets the error.
//   * The receiver ends a pinned lease with an error when the connection drops before the end
//     (the sender died), when the lease outlives the sender's deadline plus `lease_grace`, or at
//     shutdown. TransferEnded is called exactly once per pinned lease.
//
// See cuda_ipc_medium.h for the address, the mapping cache and the limits of one-sided writes,
// and cuda_pool_access.h for how Send orders the copies after the caller's kernels. The source
// blocks must stay unchanged until the Finish callback.
//
// Thread-safety and ownership: as ProtocolTransport (callbacks run on the transport's thread and
// must not block; the destructor joins every thread of the transport).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/kv_transport.h"
#include "transfer/protocol/protocol_transport.h"

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
  // How long a new connection may take to say hello, and a sender to wait for the answer.
  absl::Duration handshake_timeout = absl::Seconds(10);
  uint64_t epoch = 0;  // 0: random
};

class CudaIpcKvTransport final : public ProtocolTransport {
 public:
  static absl::StatusOr<std::unique_ptr<CudaIpcKvTransport>> Create(
      const CudaIpcKvTransportOptions& options);

 private:
  using ProtocolTransport::ProtocolTransport;
};

}  // namespace tandem::transfer
