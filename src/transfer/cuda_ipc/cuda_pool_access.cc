#include "transfer/cuda_ipc/cuda_pool_access.h"

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cstring>

#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem::transfer {
namespace {

absl::Status CudaError(cudaError_t e, std::string_view what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(StrCat("cuda ipc: ", what, ": ", cudaGetErrorName(e), " (",
                                    cudaGetErrorString(e), ")"));
}

// Makes `device` current on the calling thread for its lifetime, then restores the previous one.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    status_ = CudaError(cudaGetDevice(&previous_), "cudaGetDevice");
    if (status_.ok() && previous_ != device) status_ = CudaError(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  const absl::Status& status() const { return status_; }

 private:
  int previous_ = -1;
  absl::Status status_;
};

cudaStream_t AsStream(void* s) { return static_cast<cudaStream_t>(s); }

// Queues one copy per run, `src_block`s of `from` to `dst_block`s of `to` (device or pinned host
// memory on either side: the runtime tells them apart).
absl::Status CopyRuns(std::span<const cuda_ipc::BlockRun> runs, const uint8_t* from, uint8_t* to,
                      int64_t bytes_per_block, cudaStream_t stream) {
  for (const cuda_ipc::BlockRun& run : runs) {
    const size_t bytes = static_cast<size_t>(run.count) * static_cast<size_t>(bytes_per_block);
    TANDEM_RETURN_IF_ERROR(CudaError(
        cudaMemcpyAsync(to + static_cast<int64_t>(run.dst_block) * bytes_per_block,
                        from + static_cast<int64_t>(run.src_block) * bytes_per_block, bytes,
                        cudaMemcpyDefault, stream),
        "cudaMemcpyAsync"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaPoolAccess>> CudaPoolAccess::Create(int device, uint8_t* block0,
                                                                       int64_t num_blocks,
                                                                       int64_t bytes_per_block) {
  TANDEM_RETURN_IF_ERROR(CudaError(cudaSetDevice(device), "cudaSetDevice"));
  TANDEM_RETURN_IF_ERROR(CudaError(cudaFree(nullptr), "CUDA context creation"));
  std::unique_ptr<CudaPoolAccess> pool(new CudaPoolAccess(device, block0, num_blocks, bytes_per_block));
  cudaStream_t stream = nullptr;
  TANDEM_RETURN_IF_ERROR(
      CudaError(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate"));
  pool->stream_ = stream;
  return pool;
}

CudaPoolAccess::~CudaPoolAccess() {
  if (stream_ == nullptr) return;
  DeviceScope scope(device_);
  cudaStreamSynchronize(AsStream(stream_));
  cudaStreamDestroy(AsStream(stream_));
}

absl::Status CudaPoolAccess::Export(cuda_ipc::EndpointAddress* a) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
  TANDEM_RETURN_IF_ERROR(CudaError(
      cudaGetDriverEntryPointByVersion("cuMemGetAddressRange", &fn, 12000, cudaEnableDefault, &found),
      "looking up cuMemGetAddressRange"));
  if (fn == nullptr || found != cudaDriverEntryPointSuccess) {
    return absl::InternalError("cuda ipc: the driver has no cuMemGetAddressRange");
  }
  CUdeviceptr base = 0;
  size_t size = 0;
  if (CUresult r = reinterpret_cast<PFN_cuMemGetAddressRange_v3020>(fn)(
          &base, &size, reinterpret_cast<CUdeviceptr>(block0_));
      r != CUDA_SUCCESS) {
    return absl::InternalError(StrCat("cuda ipc: cuMemGetAddressRange of the KV pool failed (CUresult ",
                                      static_cast<int>(r), ")"));
  }
  const uint64_t offset = reinterpret_cast<uint64_t>(block0_) - static_cast<uint64_t>(base);
  if (offset + static_cast<uint64_t>(num_blocks_ * bytes_per_block_) > size) {
    return absl::InvalidArgumentError("cuda ipc: the KV pool spans more than one allocation");
  }
  cudaIpcMemHandle_t handle;
  static_assert(sizeof(handle) == cuda_ipc::kIpcHandleBytes);
  TANDEM_RETURN_IF_ERROR(CudaError(cudaIpcGetMemHandle(&handle, reinterpret_cast<void*>(base)),
                                   "cudaIpcGetMemHandle of the KV pool (it must come from cudaMalloc)"));
  a->ipc_handle.assign(reinterpret_cast<const char*>(&handle), sizeof(handle));
  a->alloc_offset = offset;
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<uint8_t>> CudaPoolAccess::Open(const cuda_ipc::EndpointAddress& a) {
  DeviceScope scope(device_);
  TANDEM_RETURN_IF_ERROR(scope.status());
  cudaIpcMemHandle_t handle;
  std::memcpy(&handle, a.ipc_handle.data(), sizeof(handle));
  void* opened = nullptr;
  TANDEM_RETURN_IF_ERROR(CudaError(
      cudaIpcOpenMemHandle(&opened, handle, cudaIpcMemLazyEnablePeerAccess), "cudaIpcOpenMemHandle"));
  const int device = device_;
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(opened) + a.alloc_offset,
                                  [opened, device](uint8_t*) {
                                    DeviceScope closing(device);
                                    cudaIpcCloseMemHandle(opened);
                                  });
}

absl::StatusOr<WriteFence> CudaPoolAccess::CaptureFence() {
  DeviceScope scope(device_);
  TANDEM_RETURN_IF_ERROR(scope.status());
  cudaEvent_t event = nullptr;
  TANDEM_RETURN_IF_ERROR(
      CudaError(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreate"));
  if (absl::Status st = CudaError(cudaEventRecord(event, cudaStreamLegacy), "cudaEventRecord");
      !st.ok()) {
    cudaEventDestroy(event);
    return st;
  }
  // Destroying a pending event is allowed: it is released once it completes.
  return WriteFence(static_cast<void*>(event), [](void* e) { cudaEventDestroy(static_cast<cudaEvent_t>(e)); });
}

absl::Status CudaPoolAccess::Copy(uint8_t* remote_block0, std::span<const cuda_ipc::BlockRun> runs,
                                  const WriteFence& fence) {
  DeviceScope scope(device_);
  TANDEM_RETURN_IF_ERROR(scope.status());
  cudaStream_t stream = AsStream(stream_);
  if (fence != nullptr) {
    TANDEM_RETURN_IF_ERROR(CudaError(
        cudaStreamWaitEvent(stream, static_cast<cudaEvent_t>(fence.get()), 0), "cudaStreamWaitEvent"));
  }
  return CopyRuns(runs, block0_, remote_block0, bytes_per_block_, stream);
}

absl::Status CudaPoolAccess::CopyFrom(const uint8_t* from_block0,
                                      std::span<const cuda_ipc::BlockRun> runs) {
  DeviceScope scope(device_);
  TANDEM_RETURN_IF_ERROR(scope.status());
  // A run's src_block is read at `from_block0` and written to the pool's dst_block.
  return CopyRuns(runs, from_block0, block0_, bytes_per_block_, AsStream(stream_));
}

absl::Status CudaPoolAccess::WhenDone(std::function<void()> fn) {
  DeviceScope scope(device_);
  TANDEM_RETURN_IF_ERROR(scope.status());
  auto* task = new std::function<void()>(std::move(fn));
  const cudaError_t e = cudaLaunchHostFunc(
      AsStream(stream_),
      [](void* arg) {
        std::unique_ptr<std::function<void()>> f(static_cast<std::function<void()>*>(arg));
        (*f)();
      },
      task);
  if (e != cudaSuccess) delete task;
  return CudaError(e, "cudaLaunchHostFunc");
}

absl::Status CudaPoolAccess::Sync() {
  DeviceScope scope(device_);
  TANDEM_RETURN_IF_ERROR(scope.status());
  return CudaError(cudaStreamSynchronize(AsStream(stream_)), "cudaStreamSynchronize");
}

}  // namespace tandem::transfer
