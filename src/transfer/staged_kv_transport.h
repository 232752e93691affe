// StagedKvTransport: the fallback for GPU KV caches where neither CUDA IPC (another node) nor
// NCCL is available: blocks go device -> pinned host -> UCX -> pinned host -> device, over the
// existing UcxKvTransport, which does the handshake (layout, epoch), the lease and the end of a
// transfer exactly as for host caches.
//
//   * Each side keeps a pinned host mirror with one slot per device block (block b of the mirror
//     stages device block b), registered as the UCX transport's cache. Memory cost: the size of
//     the device pool in pinned host memory, on each side. Concurrent transfers never share a
//     slot because they never share a device block.
//   * Sender: Send makes the transport's copy stream wait for an event recorded on the legacy
//     default stream (so the copies follow the kernels queued before Send on blocking streams,
//     which is how the CUDA backend's KV writes are ordered), enqueues the D2H copies of its source blocks (consecutive runs merged) on the
//     transport's copy stream and then, with cudaLaunchHostFunc, the inner UCX Send of the same
//     copies: UCX reads the mirror only once the copies are complete. Finish is forwarded the same
//     way, so it follows every Send. A failed D2H copy aborts the inner transfer (the destination
//     unpins the lease) and Finish reports the CUDA error.
//   * Receiver: UCX writes the mirror slots of the destination blocks; the transport's own lease
//     handler forwards TransferStarting, and on TransferEnded(OK) uploads the lease's blocks
//     (options.lease_blocks names them) host -> device and synchronizes before forwarding
//     TransferEnded(OK), so the decode worker never adopts a lease whose device blocks are not
//     complete. The upload runs on the UCX progress thread (it blocks it for the copy: ~20 ms for
//     512 MiB) so that the sender's Finish still completes only after the destination recorded
//     the lease. A failed upload is forwarded as TransferEnded(error) (the sender, already
//     acknowledged, does not learn it).
//
// Why not a smaller staging ring: UCX's receiver writes destination block ids straight into its
// registered cache, and its sender requires source blocks unchanged until Finish; a ring would need
// a block-id translation inside the UCX protocol (a change to ucx_wire.h/ucx_receiver.cc).
//
// Thread-safety: as UcxKvTransport; callbacks run on the UCX progress thread or on a CUDA host
// callback thread and must not block. Ownership: the device cache and the lease handler are not
// owned and must outlive the transport.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/kv_transport.h"
#include "transfer/ucx/ucx_kv_transport.h"

namespace tandem::transfer {

struct StagedKvTransportOptions {
  KvCacheStorage* cache = nullptr;  // required, device memory
  KvLayoutInfo layout;              // must describe `cache`
  std::string worker_id;
  // Decode role (null: inbound transfers are refused).
  KvLeaseHandler* lease_handler = nullptr;
  // Decode role: the device blocks a pinned lease receives (its KvDestination::blocks). Required
  // with a lease handler; called on the UCX progress thread.
  std::function<std::vector<int32_t>(const std::string& lease_id)> lease_blocks;
  // Passed on to the inner UCX transport (its cache, layout, worker id and lease handler are set
  // from the fields above).
  UcxKvTransportOptions ucx;
};

class StagedKvTransport final : public KvTransport {
 public:
  static absl::StatusOr<std::unique_ptr<StagedKvTransport>> Create(
      const StagedKvTransportOptions& options);
  // Waits for queued copies, then destroys the UCX transport (failing what is still running).
  ~StagedKvTransport() override;

  std::string_view name() const override { return "staged-ucx"; }
  const KvEndpoint& local_endpoint() const override;
  absl::StatusOr<std::unique_ptr<KvTransfer>> StartTransfer(const KvDestination& destination,
                                                            absl::Time deadline) override;

  struct Core;  // internal

 private:
  explicit StagedKvTransport(std::unique_ptr<Core> core);
  std::unique_ptr<Core> core_;
};

}  // namespace tandem::transfer
