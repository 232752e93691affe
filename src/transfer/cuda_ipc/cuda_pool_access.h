// CudaPoolAccess: PoolAccess with the CUDA runtime, for the CUDA IPC medium (CUDA builds only).
//
//   * Export: the IPC handle of the cudaMalloc allocation holding the pool (found with the
//     driver's cuMemGetAddressRange, looked up through the runtime so that nothing links libcuda
//     and binaries load on machines without a driver) and block 0's offset in it. The pool must
//     come from cudaMalloc (not cudaMallocAsync pools or cuMemCreate) to be exportable.
//   * Open: cudaIpcOpenMemHandle; the mapping is closed with cudaIpcCloseMemHandle.
//   * CaptureFence records an event on the legacy default stream at Send: the copies wait for
//     it, so they follow every kernel this process queued before Send on the legacy stream or on
//     blocking streams (the CUDA backend's stream is one: its KV writes may still be queued when
//     a forward pass without logits returns). Work on non-blocking streams must be complete
//     before Send.
//   * Copy: cudaMemcpyAsync on a non-blocking stream of its own, to a peer's pool (device to
//     device) or to pinned host memory (the staged medium's mirror); CopyFrom brings runs from
//     such memory into the pool; WhenDone runs a host function after the queued copies; Sync
//     waits for that stream.
//
// Thread-safety: as PoolAccess. Ownership: owns its stream; the pool is not owned.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "transfer/cuda_ipc/pool_access.h"

namespace tandem::transfer {

class CudaPoolAccess final : public PoolAccess {
 public:
  // The pool's block 0 on `device`; makes the device current on the calling thread.
  static absl::StatusOr<std::unique_ptr<CudaPoolAccess>> Create(int device, uint8_t* block0,
                                                                int64_t num_blocks,
                                                                int64_t bytes_per_block);
  ~CudaPoolAccess() override;

  absl::Status Export(cuda_ipc::EndpointAddress* address) override;
  absl::StatusOr<std::shared_ptr<uint8_t>> Open(const cuda_ipc::EndpointAddress& address) override;
  absl::StatusOr<WriteFence> CaptureFence() override;
  absl::Status Copy(uint8_t* remote_block0, std::span<const cuda_ipc::BlockRun> runs,
                    const WriteFence& fence) override;
  absl::Status Sync() override;

  // Queues copies of `runs` from the memory whose block 0 is `from_block0` (device or pinned
  // host) into the local pool.
  absl::Status CopyFrom(const uint8_t* from_block0, std::span<const cuda_ipc::BlockRun> runs);
  // Runs `fn` on a CUDA thread once every copy queued so far is complete; it must not call CUDA.
  absl::Status WhenDone(std::function<void()> fn);

 private:
  CudaPoolAccess(int device, uint8_t* block0, int64_t num_blocks, int64_t bytes_per_block)
      : device_(device), block0_(block0), num_blocks_(num_blocks), bytes_per_block_(bytes_per_block) {}

  const int device_;
  uint8_t* const block0_;
  const int64_t num_blocks_;
  const int64_t bytes_per_block_;
  void* stream_ = nullptr;  // cudaStream_t (no CUDA types in this header)
};

}  // namespace tandem::transfer
