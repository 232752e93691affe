#include "transfer/ucx/ucx_kv_transport.h"

#include <utility>

#include "common/strings.h"
#include "transfer/protocol/epoch.h"

namespace tandem::transfer {

absl::StatusOr<std::unique_ptr<UcxKvTransport>> UcxKvTransport::Create(
    const UcxKvTransportOptions& options) {
  KvCacheStorage* cache = options.cache;
  if (cache == nullptr || cache->host_base() == nullptr || cache->num_blocks() <= 0) {
    return absl::InvalidArgumentError("UcxKvTransport: a non-empty host-memory KV cache is required");
  }
  if (cache->layout().bytes_per_block() != options.layout.layout.bytes_per_block() ||
      cache->block_format() != options.layout.block_format) {
    return absl::InvalidArgumentError(StrCat("UcxKvTransport: the layout (",
                                             options.layout.Describe(),
                                             ") does not describe the cache"));
  }
  ProtocolOptions p;
  p.name = "ucx";
  p.worker_id = options.worker_id;
  p.epoch = options.epoch != 0 ? options.epoch : RandomEpoch();
  p.layout = options.layout;
  p.num_blocks = cache->num_blocks();
  p.bytes_per_block = cache->layout().bytes_per_block();
  p.lease_handler = options.lease_handler;
  p.lease_grace = options.lease_grace;
  UcxMediumOptions m;
  m.cache = cache;
  m.worker_id = options.worker_id;
  m.epoch = p.epoch;
  m.transports = options.transports;
  m.data_path = options.data_path;
  m.keepalive_interval = options.keepalive_interval;
  absl::StatusOr<std::shared_ptr<Core>> core = StartCore(p, std::make_unique<UcxMedium>(m));
  if (!core.ok()) return core.status();
  return std::unique_ptr<UcxKvTransport>(new UcxKvTransport(std::move(*core)));
}

}  // namespace tandem::transfer
