#include "transfer/staged/staged_kv_transport.h"

#include <utility>

#include "common/status_macros.h"
#include "common/strings.h"
#include "transfer/protocol/epoch.h"
#include "transfer/staged/staged_medium.h"

namespace tandem::transfer {

absl::StatusOr<std::unique_ptr<StagedKvTransport>> StagedKvTransport::Create(
    const StagedKvTransportOptions& options) {
  KvCacheStorage* cache = options.cache;
  if (cache == nullptr || cache->device_base() == nullptr || cache->device() < 0 ||
      cache->num_blocks() <= 0) {
    return absl::InvalidArgumentError("StagedKvTransport: a non-empty device-memory KV cache is required");
  }
  if (cache->layout().bytes_per_block() != options.layout.layout.bytes_per_block()) {
    return absl::InvalidArgumentError(StrCat("StagedKvTransport: the layout (",
                                             options.layout.Describe(), ") does not describe the cache"));
  }
  const UcxKvTransportOptions& u = options.ucx;
  ProtocolOptions p;
  p.name = "staged-ucx";
  p.worker_id = options.worker_id;
  p.epoch = u.epoch != 0 ? u.epoch : RandomEpoch();
  p.layout = options.layout;
  p.num_blocks = cache->num_blocks();
  p.bytes_per_block = cache->layout().bytes_per_block();
  p.lease_handler = options.lease_handler;
  p.lease_grace = u.lease_grace;
  UcxMediumOptions m;
  m.worker_id = options.worker_id;
  m.epoch = p.epoch;
  m.transports = u.transports;
  m.data_path = u.data_path;
  m.keepalive_interval = u.keepalive_interval;
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<StagedMedium> medium, StagedMedium::Create(cache, m));
  TANDEM_ASSIGN_OR_RETURN(std::shared_ptr<Core> core, StartCore(p, std::move(medium)));
  return std::unique_ptr<StagedKvTransport>(new StagedKvTransport(std::move(core)));
}

}  // namespace tandem::transfer
