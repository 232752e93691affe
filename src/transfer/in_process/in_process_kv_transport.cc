#include "transfer/in_process/in_process_kv_transport.h"

#include <utility>

#include "transfer/in_process/in_process_medium.h"
#include "transfer/protocol/epoch.h"

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
  KvCacheStorage* cache = options.cache;
  if (cache == nullptr || cache->host_base() == nullptr) {
    return absl::InvalidArgumentError("InProcessKvTransport: a host-memory KV cache is required");
  }
  if (cache->layout().bytes_per_block() != options.layout.layout.bytes_per_block()) {
    return absl::InvalidArgumentError(
        StrCat("InProcessKvTransport: the layout (", options.layout.Describe(),
               ") does not describe the cache"));
  }
  ProtocolOptions p;
  p.name = "inprocess";
  p.worker_id = options.worker_id;
  p.epoch = options.epoch != 0 ? options.epoch : RandomEpoch();
  p.layout = options.layout;
  p.num_blocks = cache->num_blocks();
  p.bytes_per_block = cache->layout().bytes_per_block();
  p.lease_handler = options.lease_handler;
  auto medium = std::make_unique<InProcessMedium>(options.hub, options.worker_id, cache);
  InProcessMedium* raw = medium.get();
  absl::StatusOr<std::shared_ptr<Core>> core = StartCore(p, std::move(medium));
  if (!core.ok()) return core.status();
  return std::unique_ptr<InProcessKvTransport>(new InProcessKvTransport(std::move(*core), raw));
}

void InProcessKvTransport::InjectFault(const InProcessFault& fault) { medium_->InjectFault(fault); }

}  // namespace tandem::transfer
