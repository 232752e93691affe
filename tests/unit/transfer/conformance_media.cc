// The host media the conformance suite runs on here: in-process, UCX (both data paths) and the
// CUDA IPC medium with its device calls replaced by host memcpys (HostPoolAccess), so that its
// control channel and bookkeeping are checked on machines without a GPU.
#include <cstring>
#include <memory>
#include <string>

#include "transfer/cuda_ipc/cuda_ipc_medium.h"
#include "transfer/in_process/in_process_kv_transport.h"
#include "transfer/protocol/epoch.h"
#include "unit/transfer/kv_transport_conformance.h"
#include "unit/transfer/transfer_test_util.h"
#if TANDEM_HAVE_UCX
#include "transfer/ucx/ucx_kv_transport.h"
#endif

namespace tandem::transfer::testing {
namespace {

class HostCache final : public ConformanceCache {
 public:
  HostCache(const KvLayoutInfo& layout, int64_t num_blocks) : cache_(testing::MakeCache(layout, num_blocks)) {}
  KvCacheStorage* get() override { return cache_.get(); }
  void FillRandom(uint64_t seed) override { testing::FillRandom(cache_, seed); }
  void FillByte(uint8_t value) override { testing::FillByte(cache_, value); }
  std::vector<uint8_t> Block(int64_t block) override {
    const uint8_t* p = cache_.block(block);
    return std::vector<uint8_t>(p, p + cache_.bytes_per_block());
  }

 private:
  TestCache cache_;
};

class HostMaker : public TransportMaker {
 public:
  std::unique_ptr<ConformanceCache> MakeCache(const KvLayoutInfo& layout, int64_t num_blocks) override {
    return std::make_unique<HostCache>(layout, num_blocks);
  }
};

class InProcessMaker final : public HostMaker {
 public:
  std::unique_ptr<KvTransport> Make(const std::string& worker_id, ConformanceCache& cache,
                                    const KvLayoutInfo& layout, KvLeaseHandler* handler) override {
    InProcessKvTransportOptions o;
    o.hub = hub_;
    o.worker_id = worker_id;
    o.cache = cache.get();
    o.layout = layout;
    o.lease_handler = handler;
    return InProcessKvTransport::Create(o).value();
  }

 private:
  std::shared_ptr<InProcessKvHub> hub_ = std::make_shared<InProcessKvHub>();
};

#if TANDEM_HAVE_UCX
class UcxMaker final : public HostMaker {
 public:
  explicit UcxMaker(UcxDataPath path) : path_(path) {}
  std::unique_ptr<KvTransport> Make(const std::string& worker_id, ConformanceCache& cache,
                                    const KvLayoutInfo& layout, KvLeaseHandler* handler) override {
    UcxKvTransportOptions o = TestUcxOptions(worker_id, cache.get(), layout, handler);
    o.data_path = path_;
    auto t = UcxKvTransport::Create(o);
    EXPECT_TRUE(t.ok()) << t.status();
    return std::move(t).value();
  }

 private:
  const UcxDataPath path_;
};
#endif

// PoolAccess over host memory in one process: the peer's pool is reached by its owner pointer
// (the medium's same-process path), copies are memcpys.
class HostPoolAccess final : public PoolAccess {
 public:
  HostPoolAccess(uint8_t* block0, int64_t bytes_per_block) : block0_(block0), bytes_(bytes_per_block) {}
  absl::Status Export(cuda_ipc::EndpointAddress*) override { return absl::OkStatus(); }
  absl::StatusOr<std::shared_ptr<uint8_t>> Open(const cuda_ipc::EndpointAddress&) override {
    return absl::UnimplementedError("a host pool cannot be opened from another process");
  }
  absl::StatusOr<WriteFence> CaptureFence() override { return WriteFence(); }
  absl::Status Copy(uint8_t* remote_block0, std::span<const cuda_ipc::BlockRun> runs,
                    const WriteFence&) override {
    for (const cuda_ipc::BlockRun& r : runs) {
      std::memcpy(remote_block0 + r.dst_block * bytes_, block0_ + r.src_block * bytes_,
                  static_cast<size_t>(r.count * bytes_));
    }
    return absl::OkStatus();
  }
  absl::Status Sync() override { return absl::OkStatus(); }

 private:
  uint8_t* const block0_;
  const int64_t bytes_;
};

// The CUDA IPC medium over HostPoolAccess, under the protocol.
class HostCudaIpcTransport final : public ProtocolTransport {
 public:
  static std::unique_ptr<KvTransport> Create(const std::string& worker_id, KvCacheStorage* cache,
                                             const KvLayoutInfo& layout, KvLeaseHandler* handler) {
    ProtocolOptions p;
    p.name = "cuda-ipc-host";
    p.worker_id = worker_id;
    p.epoch = RandomEpoch();
    p.layout = layout;
    p.num_blocks = cache->num_blocks();
    p.bytes_per_block = cache->layout().bytes_per_block();
    p.lease_handler = handler;
    CudaIpcMediumOptions m;
    m.worker_id = worker_id;
    m.epoch = p.epoch;
    m.block0 = cache->host_base();
    m.num_blocks = p.num_blocks;
    m.bytes_per_block = p.bytes_per_block;
    m.accept_inbound = handler != nullptr;
    auto pool = std::make_unique<HostPoolAccess>(cache->host_base(), p.bytes_per_block);
    auto core = StartCore(p, std::make_unique<CudaIpcMedium>(m, std::move(pool)));
    EXPECT_TRUE(core.ok()) << core.status();
    return std::unique_ptr<KvTransport>(new HostCudaIpcTransport(std::move(core).value()));
  }

 private:
  using ProtocolTransport::ProtocolTransport;
};

class CudaIpcHostMaker final : public HostMaker {
 public:
  std::unique_ptr<KvTransport> Make(const std::string& worker_id, ConformanceCache& cache,
                                    const KvLayoutInfo& layout, KvLeaseHandler* handler) override {
    return HostCudaIpcTransport::Create(worker_id, cache.get(), layout, handler);
  }
};

const RegisterMaker kInProcess("inprocess", [] { return std::make_unique<InProcessMaker>(); });
const RegisterMaker kCudaIpcHost("cuda_ipc_host", [] { return std::make_unique<CudaIpcHostMaker>(); });
#if TANDEM_HAVE_UCX
const RegisterMaker kUcx("ucx", [] { return std::make_unique<UcxMaker>(UcxDataPath::kActiveMessage); });
const RegisterMaker kUcxPut("ucx_put", [] { return std::make_unique<UcxMaker>(UcxDataPath::kRmaPut); });
#endif

INSTANTIATE_TEST_SUITE_P(Transports, KvTransportConformanceTest,
                         ::testing::Values("inprocess", "ucx", "ucx_put", "cuda_ipc_host"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tandem::transfer::testing
