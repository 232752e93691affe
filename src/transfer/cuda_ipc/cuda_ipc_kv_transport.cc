#include "transfer/cuda_ipc/cuda_ipc_kv_transport.h"

#include <utility>

#include "common/status_macros.h"
#include "transfer/cuda_ipc/cuda_ipc_medium.h"
#include "transfer/cuda_ipc/cuda_pool_access.h"

namespace tandem::transfer {

template <>
absl::StatusOr<std::unique_ptr<CudaIpcKvTransport>> CudaIpcKvTransport::Create(
    const CudaIpcKvTransportOptions& options) {
  TANDEM_ASSIGN_OR_RETURN(
      ProtocolOptions p, ProtocolOptionsFor("CudaIpcKvTransport", "cuda-ipc", options, CacheMemory::kDevice));
  CudaIpcMediumOptions m;
  m.worker_id = options.worker_id;
  m.epoch = p.epoch;
  m.block0 = options.cache->device_base();
  m.device = options.cache->device();
  m.num_blocks = p.num_blocks;
  m.bytes_per_block = p.bytes_per_block;
  m.accept_inbound = options.lease_handler != nullptr;
  m.socket_dir = options.socket_dir;
  m.handshake_timeout = options.handshake_timeout;
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<CudaPoolAccess> pool,
                          CudaPoolAccess::Create(m.device, m.block0, m.num_blocks, m.bytes_per_block));
  TANDEM_ASSIGN_OR_RETURN(std::shared_ptr<Core> core,
                          StartCore(p, std::make_unique<CudaIpcMedium>(m, std::move(pool))));
  return std::unique_ptr<CudaIpcKvTransport>(new CudaIpcKvTransport(std::move(core)));
}

}  // namespace tandem::transfer
