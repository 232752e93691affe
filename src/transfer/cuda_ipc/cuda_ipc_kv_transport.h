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

// The cache must be in device memory (device_base(), device()). Without a lease handler the pool
// is not exported and no control socket is opened (prefill-only worker).
struct CudaIpcKvTransportOptions : KvTransportCommonOptions {
  std::string socket_dir = "/tmp";  // where the control socket lives (shared by both processes)
};

using CudaIpcKvTransport = MediumTransport<CudaIpcKvTransportOptions>;
template <>
absl::StatusOr<std::unique_ptr<CudaIpcKvTransport>> CudaIpcKvTransport::Create(
    const CudaIpcKvTransportOptions& options);

}  // namespace tandem::transfer
