#include "transfer/ucx/ucx_kv_transport.h"

#include <utility>

#include "common/status_macros.h"

namespace tandem::transfer {

UcxMediumOptions UcxMediumOptionsFor(const UcxKvTransportOptions& options,
                                     const std::string& worker_id, uint64_t epoch) {
  UcxMediumOptions m;
  m.worker_id = worker_id;
  m.epoch = epoch;
  m.transports = options.transports;
  m.data_path = options.data_path;
  m.keepalive_interval = options.keepalive_interval;
  return m;
}

template <>
absl::StatusOr<std::unique_ptr<UcxKvTransport>> UcxKvTransport::Create(
    const UcxKvTransportOptions& options) {
  TANDEM_ASSIGN_OR_RETURN(ProtocolOptions p,
                          ProtocolOptionsFor("UcxKvTransport", "ucx", options, CacheMemory::kHost));
  UcxMediumOptions m = UcxMediumOptionsFor(options, options.worker_id, p.epoch);
  m.cache = options.cache;
  TANDEM_ASSIGN_OR_RETURN(std::shared_ptr<Core> core, StartCore(p, std::make_unique<UcxMedium>(m)));
  return std::unique_ptr<UcxKvTransport>(new UcxKvTransport(std::move(core)));
}

}  // namespace tandem::transfer
