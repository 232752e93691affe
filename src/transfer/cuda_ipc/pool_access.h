// PoolAccess: how the CUDA IPC medium reaches device memory. The medium (cuda_ipc_medium.h) is
// plain host code above this interface; CudaPoolAccess (cuda_pool_access.h, CUDA builds only)
// implements it with the CUDA runtime, and tests implement it over host memory so that the
// medium's control channel and bookkeeping run on machines without a GPU.
//
// Thread-safety: CaptureFence may be called from any thread; the rest only from the medium's
// thread. Ownership: the local pool is not owned.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "transfer/cuda_ipc/cuda_ipc_wire.h"
#include "transfer/protocol/medium.h"

namespace tandem::transfer {

class PoolAccess {
 public:
  virtual ~PoolAccess() = default;
  // Fills the address's IPC handle and offset for the local pool (decode side).
  virtual absl::Status Export(cuda_ipc::EndpointAddress* address) = 0;
  // Maps a peer's exported pool into this process: block 0 there; the mapping is closed when the
  // last copy of the returned pointer goes.
  virtual absl::StatusOr<std::shared_ptr<uint8_t>> Open(const cuda_ipc::EndpointAddress& address) = 0;
  // Captured at Send on the caller's thread: the copies wait for the work the caller queued.
  virtual absl::StatusOr<WriteFence> CaptureFence() = 0;
  // Queues copies of local `runs` to the pool whose block 0 is `remote_block0`, after `fence`.
  virtual absl::Status Copy(uint8_t* remote_block0, std::span<const cuda_ipc::BlockRun> runs,
                            const WriteFence& fence) = 0;
  // Returns once every queued copy is complete.
  virtual absl::Status Sync() = 0;
};

}  // namespace tandem::transfer
