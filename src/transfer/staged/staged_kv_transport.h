// StagedKvTransport: the KV hand-off protocol (transfer/protocol/) over the staged medium
// (staged_medium.h): GPU KV caches moved device -> pinned host -> UCX -> pinned host -> device,
// the fallback where neither CUDA IPC (another node) nor NCCL is available. The handshake
// (layout, epoch), the lease and the end of a transfer are the protocol's, as for every medium;
// the receiver uploads a lease's blocks to the device before it reports the lease filled. Not
// wired into the worker (tandem worker uses CUDA IPC for GPU caches).
//
// Thread-safety and ownership: as ProtocolTransport; callbacks run on the UCX progress thread and
// must not block. The device cache and the lease handler are not owned and must outlive the
// transport.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tandem/kv_transport.h"
#include "transfer/protocol/protocol_transport.h"
#include "transfer/ucx/ucx_kv_transport.h"

namespace tandem::transfer {

// The cache must be in device memory.
struct StagedKvTransportOptions : KvTransportCommonOptions {
  // The UCX settings (transports, data path, keepalive); its common fields are ignored: the ones
  // above apply.
  UcxKvTransportOptions ucx;
};

using StagedKvTransport = MediumTransport<StagedKvTransportOptions>;
template <>
absl::StatusOr<std::unique_ptr<StagedKvTransport>> StagedKvTransport::Create(
    const StagedKvTransportOptions& options);

}  // namespace tandem::transfer
