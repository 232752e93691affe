// The KvTransport conformance suite's parts that a test binary plugs its media into: a cache
// the suite can fill and read whatever memory it lives in, a maker of caches and transports of
// one medium, and the registry of makers by parameter name. The test bodies are in
// kv_transport_conformance_test.cc; each binary instantiates them for its media
// (conformance_media.cc: host media; tests/gpu_transfer/conformance_gpu_media.cc: GPU media).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tandem/kv_transport.h"

namespace tandem::transfer::testing {

class ConformanceCache {
 public:
  virtual ~ConformanceCache() = default;
  virtual KvCacheStorage* get() = 0;
  // Every block filled with bytes from a generator seeded with `seed`.
  virtual void FillRandom(uint64_t seed) = 0;
  virtual void FillByte(uint8_t value) = 0;
  virtual std::vector<uint8_t> Block(int64_t block) = 0;
};

bool BlockEquals(ConformanceCache& a, int64_t block_a, ConformanceCache& b, int64_t block_b);
bool BlockIsByte(ConformanceCache& cache, int64_t block, uint8_t value);

// Makes caches and transports of one medium that can reach each other.
class TransportMaker {
 public:
  virtual ~TransportMaker() = default;
  virtual std::unique_ptr<ConformanceCache> MakeCache(const KvLayoutInfo& layout,
                                                      int64_t num_blocks) = 0;
  virtual std::unique_ptr<KvTransport> Make(const std::string& worker_id, ConformanceCache& cache,
                                            const KvLayoutInfo& layout, KvLeaseHandler* handler) = 0;
};

// A factory returns null to skip its medium (not built, no device).
using MakerFactory = std::function<std::unique_ptr<TransportMaker>()>;
std::map<std::string, MakerFactory>& ConformanceMakers();
struct RegisterMaker {
  RegisterMaker(const std::string& name, MakerFactory factory) {
    ConformanceMakers()[name] = std::move(factory);
  }
};

class KvTransportConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override;
  std::unique_ptr<ConformanceCache> MakeCache(const KvLayoutInfo& layout, int64_t num_blocks) {
    return maker_->MakeCache(layout, num_blocks);
  }
  std::unique_ptr<KvTransport> Make(const std::string& id, ConformanceCache& cache,
                                    KvLeaseHandler* handler = nullptr);
  std::unique_ptr<KvTransport> Make(const std::string& id, ConformanceCache& cache,
                                    KvLeaseHandler* handler, const KvLayoutInfo& layout) {
    return maker_->Make(id, cache, layout, handler);
  }

  std::unique_ptr<TransportMaker> maker_;
};

}  // namespace tandem::transfer::testing
