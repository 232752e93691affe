#include "transfer/cuda_ipc/cuda_ipc_kv_transport.h"

#include <utility>

#include "common/status_macros.h"
#include "common/strings.h"
#include "transfer/cuda_ipc/cuda_ipc_medium.h"
#include "transfer/cuda_ipc/cuda_pool_access.h"
#include "transfer/protocol/epoch.h"

namespace tandem::transfer {

absl::StatusOr<std::unique_ptr<CudaIpcKvTransport>> CudaIpcKvTransport::Create(
    const CudaIpcKvTransportOptions& options) {
  KvCacheStorage* cache = options.cache;
  if (cache == nullptr || cache->device_base() == nullptr || cache->device() < 0 ||
      cache->num_blocks() <= 0) {
    return absl::InvalidArgumentError("CudaIpcKvTransport: a non-empty device-memory KV cache is required");
  }
  if (cache->layout().bytes_per_block() != options.layout.layout.bytes_per_block() ||
      cache->block_format() != options.layout.block_format) {
    return absl::InvalidArgumentError(StrCat("CudaIpcKvTransport: the layout (",
                                             options.layout.Describe(), ") does not describe the cache"));
  }
  ProtocolOptions p;
  p.name = "cuda-ipc";
  p.worker_id = options.worker_id;
  p.epoch = options.epoch != 0 ? options.epoch : RandomEpoch();
  p.layout = options.layout;
  p.num_blocks = cache->num_blocks();
  p.bytes_per_block = cache->layout().bytes_per_block();
  p.lease_handler = options.lease_handler;
  p.lease_grace = options.lease_grace;
  p.handshake_timeout = options.handshake_timeout;
  CudaIpcMediumOptions m;
  m.worker_id = options.worker_id;
  m.epoch = p.epoch;
  m.block0 = cache->device_base();
  m.device = cache->device();
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
