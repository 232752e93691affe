// The staged medium: the UCX medium (ucx_medium.h) over pinned host mirrors of GPU KV caches,
// plus two copy hooks, for GPU caches where neither CUDA IPC (another node) nor NCCL is available:
// device -> pinned host -> UCX -> pinned host -> device. Everything else (connections, the
// protocol's messages, the data path) is the UCX medium's.
//
//   * Each side keeps a pinned host mirror with one slot per device block (block b of the mirror
//     stages device block b), registered as the UCX medium's cache. Memory cost: the size of the
//     device pool in pinned host memory, on each side. Concurrent transfers never share a slot
//     because they never share a device block.
//   * Sender (WriteBlocks): the device -> mirror copies of the source blocks (consecutive runs
//     merged) are queued on the pool's copy stream after the Send's fence (cuda_pool_access.h),
//     and once they are complete the UCX medium writes the same blocks from the mirror. A failed
//     copy fails the write.
//   * Receiver (CommitBlocks): before a lease is reported filled, its blocks are uploaded
//     mirror -> device and the stream synchronized (on the UCX progress thread: ~20 ms for
//     512 MiB), so the decode worker never adopts a lease whose device blocks are not complete;
//     a failed upload fails the lease (and the sender's Finish learns it).
//
// Thread-safety: as medium.h. Ownership: owns the UCX medium, the mirror and the pool access; the
// device cache is not owned.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "transfer/cuda_ipc/cuda_pool_access.h"
#include "transfer/protocol/medium.h"
#include "transfer/ucx/ucx_medium.h"

namespace tandem::transfer {

class StagedMedium final : public Medium {
 public:
  // `ucx` is used as given except its cache (the mirror of `device_cache`).
  static absl::StatusOr<std::unique_ptr<StagedMedium>> Create(KvCacheStorage* device_cache,
                                                              UcxMediumOptions ucx);
  ~StagedMedium() override;

  absl::Status Start(MediumEvents* events) override { return ucx_->Start(events); }
  void Stop() override;
  bool Post(std::function<void()> task) override { return ucx_->Post(std::move(task)); }
  bool OnThread() const override { return ucx_->OnThread(); }
  std::string address() const override { return ucx_->address(); }
  wire::DataPath data_path() const override { return ucx_->data_path(); }
  absl::StatusOr<PeerInfo> Resolve(const KvEndpoint& endpoint) override {
    return ucx_->Resolve(endpoint);
  }
  absl::StatusOr<WriteFence> CaptureFence() override { return pool_->CaptureFence(); }
  absl::StatusOr<ConnectionId> Connect(const KvEndpoint& endpoint, const PeerInfo& peer) override {
    return ucx_->Connect(endpoint, peer);
  }
  void SendControl(ConnectionId conn, std::string message, Completion on_sent) override {
    ucx_->SendControl(conn, std::move(message), std::move(on_sent));
  }
  void Close(ConnectionId conn) override { ucx_->Close(conn); }
  void WriteBlocks(ConnectionId conn, uint64_t transfer_id, std::vector<BlockWrite> writes,
                   WriteFence fence, Completion on_done) override;
  // After the staging copies queued so far: their writes go to UCX first.
  void Flush(ConnectionId conn, Completion on_done) override;
  absl::Status CommitBlocks(std::span<const int32_t> blocks) override;

  struct Mirror;  // pinned host memory shaped like the device cache (internal)

 private:
  StagedMedium() = default;

  std::unique_ptr<Mirror> mirror_;
  std::unique_ptr<CudaPoolAccess> pool_;  // the device cache and the copy stream
  std::unique_ptr<UcxMedium> ucx_;        // declared last: stopped and gone first
};

}  // namespace tandem::transfer
