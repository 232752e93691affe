#include "transfer/staged_kv_transport.h"

#include <cuda_runtime.h>

#include <mutex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"


namespace tandem::transfer {
namespace {

absl::Status CudaError(cudaError_t e, std::string_view what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(StrCat("staged kv transfer: ", what, ": ", cudaGetErrorName(e), " (",
                                    cudaGetErrorString(e), ")"));
}

// Pinned host memory with one slot per device block: the inner UCX transport's cache.
class HostMirror final : public KvCacheStorage {
 public:
  static absl::StatusOr<std::unique_ptr<HostMirror>> Create(const KvCacheStorage& device_cache,
                                                            std::string block_format) {
    auto m = std::unique_ptr<HostMirror>(new HostMirror());
    m->layout_ = device_cache.layout();
    m->num_blocks_ = device_cache.num_blocks();
    m->format_ = std::move(block_format);
    void* p = nullptr;
    TANDEM_RETURN_IF_ERROR(CudaError(
        cudaHostAlloc(&p, static_cast<size_t>(m->num_blocks_ * m->layout_.bytes_per_block()),
                      cudaHostAllocPortable),
        "cudaHostAlloc of the host mirror"));
    m->base_ = static_cast<uint8_t*>(p);
    return m;
  }
  ~HostMirror() override {
    if (base_ != nullptr) cudaFreeHost(base_);
  }
  uint8_t* host_base() override { return base_; }
  std::string_view block_format() const override { return format_; }

 private:
  HostMirror() = default;
  uint8_t* base_ = nullptr;
  std::string format_;
};

// What a transfer handle needs of the transport; `closed` once the transport is gone.
struct CopyContext {
  std::mutex mu;
  bool closed ABSL_GUARDED_BY(mu) = false;
  cudaStream_t stream ABSL_GUARDED_BY(mu) = nullptr;
  int device = 0;
  uint8_t* device_base = nullptr;
  uint8_t* host_base = nullptr;
  int64_t bytes_per_block = 0;
  int64_t num_blocks = 0;
};

struct SendState {
  std::mutex mu;
  std::unique_ptr<KvTransfer> inner ABSL_GUARDED_BY(mu);
  absl::Status error ABSL_GUARDED_BY(mu);
};

struct SendTask {
  std::shared_ptr<SendState> state;
  std::vector<BlockCopy> copies;
};

struct FinishTask {
  std::shared_ptr<SendState> state;
  std::function<void(absl::Status)> done;
};

// CUDA host callbacks: they call no CUDA function (UCX handles only post to their loop).
void CUDART_CB RunSend(void* arg) {
  std::unique_ptr<SendTask> task(static_cast<SendTask*>(arg));
  std::lock_guard<std::mutex> lock(task->state->mu);
  if (task->state->error.ok() && task->state->inner != nullptr) task->state->inner->Send(task->copies);
}

void CUDART_CB RunFinish(void* arg) {
  std::unique_ptr<FinishTask> task(static_cast<FinishTask*>(arg));
  std::unique_ptr<KvTransfer> inner;
  absl::Status error;
  {
    std::lock_guard<std::mutex> lock(task->state->mu);
    error = task->state->error;
    if (error.ok()) {
      task->state->inner->Finish(std::move(task->done));
      return;
    }
    inner = std::move(task->state->inner);
  }
  inner.reset();  // aborts: the destination unpins the lease
  task->done(error);
}

class StagedTransferHandle final : public KvTransfer {
 public:
  StagedTransferHandle(std::shared_ptr<CopyContext> ctx, std::unique_ptr<KvTransfer> inner,
                       size_t destination_blocks)
      : ctx_(std::move(ctx)), state_(std::make_shared<SendState>()),
        destination_blocks_(destination_blocks) {
    state_->inner = std::move(inner);
  }

  void Send(std::span<const BlockCopy> copies) override {
    std::vector<BlockCopy> batch(copies.begin(), copies.end());
    for (const BlockCopy& c : batch) {
      if (c.src_block < 0 || c.src_block >= ctx_->num_blocks || c.index < 0 ||
          static_cast<size_t>(c.index) >= destination_blocks_) {
        Fail(absl::InvalidArgumentError(StrCat("bad block copy src_block=", c.src_block,
                                               " index=", c.index)));
        return;
      }
    }
    std::lock_guard<std::mutex> lock(ctx_->mu);
    if (ctx_->closed) {
      Fail(absl::CancelledError("staged kv transfer: the transport was destroyed"));
      return;
    }
    int caller_device = -1;
    absl::Status st = CudaError(cudaGetDevice(&caller_device), "cudaGetDevice");
    if (st.ok() && caller_device != ctx_->device) {
      st = CudaError(cudaSetDevice(ctx_->device), "cudaSetDevice");
    }
    // The copies follow every kernel queued before Send on the legacy default stream or on blocking
    // streams (the CUDA backend's): an event recorded on the legacy stream, waited for by ours.
    cudaEvent_t fence = nullptr;
    if (st.ok()) st = CudaError(cudaEventCreateWithFlags(&fence, cudaEventDisableTiming), "cudaEventCreate");
    if (st.ok()) st = CudaError(cudaEventRecord(fence, cudaStreamLegacy), "cudaEventRecord");
    if (st.ok()) st = CudaError(cudaStreamWaitEvent(ctx_->stream, fence, 0), "cudaStreamWaitEvent");
    if (fence != nullptr) cudaEventDestroy(fence);  // released once it completes
    // Runs of consecutive source blocks: one D2H copy each (the mirror slot = the block id).
    for (size_t i = 0; i < batch.size() && st.ok();) {
      size_t j = i + 1;
      while (j < batch.size() && batch[j].src_block == batch[j - 1].src_block + 1) ++j;
      const int64_t offset = static_cast<int64_t>(batch[i].src_block) * ctx_->bytes_per_block;
      st = CudaError(cudaMemcpyAsync(ctx_->host_base + offset, ctx_->device_base + offset,
                                     static_cast<size_t>(j - i) * static_cast<size_t>(ctx_->bytes_per_block),
                                     cudaMemcpyDeviceToHost, ctx_->stream),
                     "cudaMemcpyAsync D2H");
      i = j;
    }
    if (st.ok()) {
      auto* task = new SendTask{state_, std::move(batch)};
      st = CudaError(cudaLaunchHostFunc(ctx_->stream, RunSend, task), "cudaLaunchHostFunc");
      if (!st.ok()) delete task;
    }
    if (caller_device >= 0 && caller_device != ctx_->device) cudaSetDevice(caller_device);
    if (!st.ok()) Fail(st);
  }

  void Finish(std::function<void(absl::Status)> done) override {
    if (finish_called_) {
      done(absl::FailedPreconditionError("kv transfer: Finish called twice"));
      return;
    }
    finish_called_ = true;
    absl::Status st;
    {
      std::lock_guard<std::mutex> lock(ctx_->mu);
      if (ctx_->closed) {
        st = absl::CancelledError("staged kv transfer: the transport was destroyed");
      } else {
        auto* task = new FinishTask{state_, std::move(done)};
        st = CudaError(cudaLaunchHostFunc(ctx_->stream, RunFinish, task), "cudaLaunchHostFunc");
        if (st.ok()) return;
        done = std::move(task->done);
        delete task;
      }
    }
    Fail(st);
    absl::Status error;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      error = state_->error;
    }
    done(error);
  }

 private:
  // Records the first error and aborts the inner transfer (the destination unpins the lease).
  void Fail(const absl::Status& status) {
    std::unique_ptr<KvTransfer> inner;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (state_->error.ok()) state_->error = status;
      inner = std::move(state_->inner);
    }
    if (inner != nullptr) {
      GetLogger("transfer")->warn("staged kv transfer failed: {}", status.ToString());
    }
  }

  std::shared_ptr<CopyContext> ctx_;
  std::shared_ptr<SendState> state_;
  const size_t destination_blocks_;
  bool finish_called_ = false;  // Finish is called once, by the transfer's owner
};

// Decode side: forwards to the worker's handler, uploading a filled lease before it is reported.
class UploadingLeaseHandler final : public KvLeaseHandler {
 public:
  UploadingLeaseHandler(KvLeaseHandler* inner,
                        std::function<std::vector<int32_t>(const std::string&)> lease_blocks,
                        CopyContext* ctx, cudaStream_t stream)
      : inner_(inner), lease_blocks_(std::move(lease_blocks)), ctx_(ctx), stream_(stream) {}

  absl::Status TransferStarting(const std::string& lease_id, int32_t num_blocks) override {
    return inner_->TransferStarting(lease_id, num_blocks);
  }

  void TransferEnded(const std::string& lease_id, const absl::Status& status) override {
    absl::Status result = status;
    if (result.ok()) result = Upload(lease_blocks_(lease_id));
    inner_->TransferEnded(lease_id, result);
  }

 private:
  absl::Status Upload(const std::vector<int32_t>& blocks) {
    TANDEM_RETURN_IF_ERROR(CudaError(cudaSetDevice(ctx_->device), "cudaSetDevice"));
    const int64_t bpb = ctx_->bytes_per_block;
    for (size_t i = 0; i < blocks.size();) {
      size_t j = i + 1;
      while (j < blocks.size() && blocks[j] == blocks[j - 1] + 1) ++j;
      if (blocks[i] < 0 || blocks[j - 1] >= ctx_->num_blocks) {
        return absl::InternalError(StrCat("staged kv transfer: lease block ", blocks[i],
                                          " outside the pool"));
      }
      const int64_t offset = static_cast<int64_t>(blocks[i]) * bpb;
      TANDEM_RETURN_IF_ERROR(CudaError(
          cudaMemcpyAsync(ctx_->device_base + offset, ctx_->host_base + offset,
                          static_cast<size_t>(j - i) * static_cast<size_t>(bpb),
                          cudaMemcpyHostToDevice, stream_),
          "cudaMemcpyAsync H2D"));
      i = j;
    }
    return CudaError(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (upload)");
  }

  KvLeaseHandler* const inner_;
  const std::function<std::vector<int32_t>(const std::string&)> lease_blocks_;
  CopyContext* const ctx_;
  const cudaStream_t stream_;
};

}  // namespace

struct StagedKvTransport::Core {
  std::shared_ptr<CopyContext> ctx = std::make_shared<CopyContext>();
  cudaStream_t upload_stream = nullptr;
  std::unique_ptr<HostMirror> mirror;
  std::unique_ptr<UploadingLeaseHandler> handler;
  std::unique_ptr<UcxKvTransport> ucx;
};

absl::StatusOr<std::unique_ptr<StagedKvTransport>> StagedKvTransport::Create(
    const StagedKvTransportOptions& options) {
  KvCacheStorage* cache = options.cache;
  if (cache == nullptr || cache->device_base() == nullptr || cache->device() < 0 ||
      cache->num_blocks() <= 0) {
    return absl::InvalidArgumentError("StagedKvTransport: a non-empty device-memory KV cache is required");
  }
  if (options.lease_handler != nullptr && !options.lease_blocks) {
    return absl::InvalidArgumentError("StagedKvTransport: a lease handler needs lease_blocks");
  }
  auto core = std::make_unique<Core>();
  CopyContext& ctx = *core->ctx;
  ctx.device = cache->device();
  ctx.device_base = cache->device_base();
  ctx.bytes_per_block = cache->layout().bytes_per_block();
  ctx.num_blocks = cache->num_blocks();
  TANDEM_RETURN_IF_ERROR(CudaError(cudaSetDevice(ctx.device), "cudaSetDevice"));
  TANDEM_ASSIGN_OR_RETURN(core->mirror, HostMirror::Create(*cache, std::string(cache->block_format())));
  ctx.host_base = core->mirror->host_base();
  {
    std::lock_guard<std::mutex> lock(ctx.mu);
    TANDEM_RETURN_IF_ERROR(CudaError(cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking),
                                     "cudaStreamCreate"));
  }
  TANDEM_RETURN_IF_ERROR(CudaError(
      cudaStreamCreateWithFlags(&core->upload_stream, cudaStreamNonBlocking), "cudaStreamCreate"));
  if (options.lease_handler != nullptr) {
    core->handler = std::make_unique<UploadingLeaseHandler>(options.lease_handler, options.lease_blocks,
                                                            core->ctx.get(), core->upload_stream);
  }
  UcxKvTransportOptions u = options.ucx;
  u.cache = core->mirror.get();
  u.layout = options.layout;
  u.worker_id = options.worker_id;
  u.lease_handler = core->handler.get();
  TANDEM_ASSIGN_OR_RETURN(core->ucx, UcxKvTransport::Create(u));
  return std::unique_ptr<StagedKvTransport>(new StagedKvTransport(std::move(core)));
}

StagedKvTransport::StagedKvTransport(std::unique_ptr<Core> core) : core_(std::move(core)) {}

StagedKvTransport::~StagedKvTransport() {
  CopyContext& ctx = *core_->ctx;
  {
    std::lock_guard<std::mutex> lock(ctx.mu);
    ctx.closed = true;
    cudaSetDevice(ctx.device);
    if (ctx.stream != nullptr) {
      cudaStreamSynchronize(ctx.stream);  // every queued copy and host callback has run
      cudaStreamDestroy(ctx.stream);
      ctx.stream = nullptr;
    }
  }
  core_->ucx.reset();  // fails running transfers and pinned leases (through `handler`)
  if (core_->upload_stream != nullptr) cudaStreamDestroy(core_->upload_stream);
}

const KvEndpoint& StagedKvTransport::local_endpoint() const { return core_->ucx->local_endpoint(); }

absl::StatusOr<std::unique_ptr<KvTransfer>> StagedKvTransport::StartTransfer(
    const KvDestination& destination, absl::Time deadline) {
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<KvTransfer> inner,
                          core_->ucx->StartTransfer(destination, deadline));
  return std::unique_ptr<KvTransfer>(
      new StagedTransferHandle(core_->ctx, std::move(inner), destination.blocks.size()));
}

}  // namespace tandem::transfer
