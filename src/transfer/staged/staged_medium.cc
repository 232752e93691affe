#include "transfer/staged/staged_medium.h"

#include <cuda_runtime.h>

#include <string>
#include <utility>

#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem::transfer {

// Pinned host memory with one slot per device block: the UCX medium's cache.
struct StagedMedium::Mirror final : public KvCacheStorage {
  static absl::StatusOr<std::unique_ptr<Mirror>> Create(KvCacheStorage& device_cache) {
    auto m = std::make_unique<Mirror>();
    m->layout_ = device_cache.layout();
    m->num_blocks_ = device_cache.num_blocks();
    m->format = std::string(device_cache.block_format());
    void* p = nullptr;
    const size_t bytes = static_cast<size_t>(m->num_blocks_ * m->layout_.bytes_per_block());
    if (cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocPortable); e != cudaSuccess) {
      return absl::ResourceExhaustedError(StrCat("staged kv transfer: cudaHostAlloc of the host mirror: ",
                                                 cudaGetErrorString(e)));
    }
    m->base = static_cast<uint8_t*>(p);
    return m;
  }
  ~Mirror() override {
    if (base != nullptr) cudaFreeHost(base);
  }
  uint8_t* host_base() override { return base; }
  std::string_view block_format() const override { return format; }

  uint8_t* base = nullptr;
  std::string format;
};

namespace {

// The runs that move `blocks` between the device and the mirror (slot b holds block b).
std::vector<cuda_ipc::BlockRun> SameSlotRuns(std::vector<BlockWrite> writes) {
  for (BlockWrite& w : writes) w.dst_block = w.src_block;
  return cuda_ipc::CoalesceWrites(writes);
}

}  // namespace

absl::StatusOr<std::unique_ptr<StagedMedium>> StagedMedium::Create(KvCacheStorage* device_cache,
                                                                   UcxMediumOptions ucx) {
  std::unique_ptr<StagedMedium> m(new StagedMedium());
  TANDEM_ASSIGN_OR_RETURN(m->pool_, CudaPoolAccess::Create(device_cache->device(),
                                                           device_cache->device_base(),
                                                           device_cache->num_blocks(),
                                                           device_cache->layout().bytes_per_block()));
  TANDEM_ASSIGN_OR_RETURN(m->mirror_, Mirror::Create(*device_cache));
  ucx.cache = m->mirror_.get();
  m->ucx_ = std::make_unique<UcxMedium>(ucx);
  return m;
}

StagedMedium::~StagedMedium() {
  if (pool_ != nullptr) (void)pool_->Sync();  // every queued copy and host function has run
}

void StagedMedium::Stop() {
  ucx_->Stop();
  (void)pool_->Sync();  // staged writes finishing now find the UCX loop stopped: dropped
}

void StagedMedium::WriteBlocks(ConnectionId conn, uint64_t transfer_id,
                               std::vector<BlockWrite> writes, WriteFence fence,
                               Completion on_done) {
  absl::Status staged = pool_->Copy(mirror_->base, SameSlotRuns(writes), fence);
  auto forward = [this, conn, transfer_id, writes = std::move(writes), on_done]() mutable {
    ucx_->WriteBlocks(conn, transfer_id, std::move(writes), WriteFence(), std::move(on_done));
  };
  if (staged.ok()) {
    // UCX reads the mirror only once the copies are complete (the host function calls no CUDA).
    staged = pool_->WhenDone([this, forward = std::move(forward)]() mutable {
      ucx_->Post(std::move(forward));
    });
  }
  if (!staged.ok()) {
    ucx_->Post([on_done = std::move(on_done), staged] { on_done(staged); });
  }
}

void StagedMedium::Flush(ConnectionId conn, Completion on_done) {
  auto flush = [this, conn, on_done]() mutable { ucx_->Flush(conn, std::move(on_done)); };
  absl::Status queued = pool_->WhenDone([this, flush = std::move(flush)]() mutable {
    ucx_->Post(std::move(flush));
  });
  if (!queued.ok()) ucx_->Post([on_done = std::move(on_done), queued] { on_done(queued); });
}

absl::Status StagedMedium::CommitBlocks(std::span<const int32_t> blocks) {
  std::vector<BlockWrite> writes;
  writes.reserve(blocks.size());
  for (int32_t b : blocks) writes.push_back({b, 0, b});
  TANDEM_RETURN_IF_ERROR(pool_->CopyFrom(mirror_->base, SameSlotRuns(std::move(writes))));
  return pool_->Sync();
}

}  // namespace tandem::transfer
