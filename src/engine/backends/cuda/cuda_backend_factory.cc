#include "engine/backends/cuda/cuda_backend_factory.h"

#ifdef TANDEM_CUDA_ENABLED
#include "engine/backends/cuda/cuda_backend.h"
#endif

namespace tandem::cuda {

bool CudaBackendBuilt() {
#ifdef TANDEM_CUDA_ENABLED
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options) {
#ifdef TANDEM_CUDA_ENABLED
  auto backend = CudaBackend::Create(options);
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<Backend>(std::move(*backend));
#else
  (void)options;
  return absl::UnimplementedError("the CUDA backend is not available: tandem was built without CUDA");
#endif
}

}  // namespace tandem::cuda
