#include "transfer/staged/staged_kv_transport.h"

#include <utility>

#include "common/status_macros.h"
#include "transfer/staged/staged_medium.h"

namespace tandem::transfer {

template <>
absl::StatusOr<std::unique_ptr<StagedKvTransport>> StagedKvTransport::Create(
    const StagedKvTransportOptions& options) {
  TANDEM_ASSIGN_OR_RETURN(ProtocolOptions p, ProtocolOptionsFor("StagedKvTransport", "staged-ucx",
                                                                options, CacheMemory::kDevice));
  TANDEM_ASSIGN_OR_RETURN(
      std::unique_ptr<StagedMedium> medium,
      StagedMedium::Create(options.cache, UcxMediumOptionsFor(options.ucx, options.worker_id, p.epoch)));
  TANDEM_ASSIGN_OR_RETURN(std::shared_ptr<Core> core, StartCore(p, std::move(medium)));
  return std::unique_ptr<StagedKvTransport>(new StagedKvTransport(std::move(core)));
}

}  // namespace tandem::transfer
