// The GPU media the conformance suite runs on (label gpu): CUDA IPC (both transports in this
// process: the same-process path) and staged (device -> pinned host -> UCX over TCP loopback ->
// pinned host -> device). Device caches; skipped without a device, a failure under
// TANDEM_REQUIRE_GPU=1.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "gpu_transfer/gpu_test_util.h"
#include "transfer/transport_registry.h"
#include "unit/transfer/kv_transport_conformance.h"

namespace tandem::transfer::testing {
namespace {

using gpu_testing::DeviceKvCache;

class DeviceCache final : public ConformanceCache {
 public:
  explicit DeviceCache(std::unique_ptr<DeviceKvCache> cache) : cache_(std::move(cache)) {}
  KvCacheStorage* get() override { return cache_.get(); }
  void FillRandom(uint64_t seed) override { EXPECT_TRUE(cache_->FillPattern(seed).ok()); }
  void FillByte(uint8_t value) override { EXPECT_TRUE(cache_->FillByte(value).ok()); }
  std::vector<uint8_t> Block(int64_t block) override {
    auto bytes = cache_->ReadBlock(block);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    return bytes.ok() ? std::move(*bytes) : std::vector<uint8_t>();
  }

 private:
  std::unique_ptr<DeviceKvCache> cache_;
};

// Transports of `medium` from the registry, over device caches.
class DeviceMaker final : public TransportMaker {
 public:
  explicit DeviceMaker(std::string medium) : medium_(std::move(medium)) {}
  std::unique_ptr<ConformanceCache> MakeCache(const KvLayoutInfo& layout, int64_t num_blocks) override {
    auto cache = DeviceKvCache::Create(layout, num_blocks);
    EXPECT_TRUE(cache.ok()) << cache.status();
    return std::make_unique<DeviceCache>(std::move(cache).value());
  }
  std::unique_ptr<KvTransport> Make(const std::string& worker_id, ConformanceCache& cache,
                                    const KvLayoutInfo& layout, KvLeaseHandler* handler) override {
    TransportOptions o;
    o.medium = medium_;
    o.cache = cache.get();
    o.layout = layout;
    o.worker_id = worker_id;
    o.lease_handler = handler;
    o.ucx_tls = "tcp,sm,self";
    auto t = MakeTransport(o);
    EXPECT_TRUE(t.ok()) << t.status();
    return std::move(t).value();
  }

 private:
  const std::string medium_;
};

MakerFactory Device(const std::string& medium) {
  return [medium]() -> std::unique_ptr<TransportMaker> {
    if (gpu_testing::DeviceCount() == 0) {
      if (gpu_testing::GpuRequired()) ADD_FAILURE() << "TANDEM_REQUIRE_GPU=1 but no CUDA device is usable";
      return nullptr;
    }
    const std::vector<std::string> built = AvailableMedia();
    if (std::find(built.begin(), built.end(), medium) == built.end()) return nullptr;
    return std::make_unique<DeviceMaker>(medium);
  };
}

const RegisterMaker kCudaIpc("cuda_ipc", Device("cuda-ipc"));
const RegisterMaker kStaged("staged", Device("staged-ucx"));

INSTANTIATE_TEST_SUITE_P(Transports, KvTransportConformanceTest,
                         ::testing::Values("cuda_ipc", "staged"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tandem::transfer::testing
