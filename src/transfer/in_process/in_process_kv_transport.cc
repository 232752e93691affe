#include "transfer/in_process/in_process_kv_transport.h"

#include <utility>

#include "transfer/in_process/in_process_medium.h"
#include "common/status_macros.h"

namespace tandem::transfer {

std::string InProcessKvHub::Register(std::shared_ptr<internal::InProcessStation> station) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string address = StrCat(kInProcessAddressPrefix, station->worker_id, "/", next_id_++);
  stations_[address] = std::move(station);
  return address;
}

void InProcessKvHub::Unregister(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  stations_.erase(address);
}

std::shared_ptr<internal::InProcessStation> InProcessKvHub::Find(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = stations_.find(address);
  return it == stations_.end() ? nullptr : it->second;
}

absl::StatusOr<std::unique_ptr<InProcessKvTransport>> InProcessKvTransport::Create(
    const InProcessKvTransportOptions& options) {
  if (options.hub == nullptr) return absl::InvalidArgumentError("InProcessKvTransport: no hub");
  TANDEM_ASSIGN_OR_RETURN(
      ProtocolOptions p, ProtocolOptionsFor("InProcessKvTransport", "inprocess", options, CacheMemory::kHost));
  auto medium = std::make_unique<InProcessMedium>(options.hub, options.worker_id, options.cache);
  InProcessMedium* raw = medium.get();
  TANDEM_ASSIGN_OR_RETURN(std::shared_ptr<Core> core,
                          StartCore(p, std::move(medium)));
  return std::unique_ptr<InProcessKvTransport>(new InProcessKvTransport(std::move(core), raw));
}

void InProcessKvTransport::InjectFault(const InProcessFault& fault) { medium_->InjectFault(fault); }

}  // namespace tandem::transfer
