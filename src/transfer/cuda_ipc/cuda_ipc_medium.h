// The CUDA IPC medium: two worker processes on one GPU node, blocks copied device-to-device with
// no host copy. Host code; the device work goes through PoolAccess (pool_access.h).
//
//   * Address: "cudaipc1:" + hex of {epoch, process nonce, node boot id, control socket path,
//     IPC handle of the pool's allocation, offset of block 0 in it, pool size}. Resolve refuses
//     at once an endpoint on another node (boot id), one whose address belongs to another epoch,
//     and one that accepts no transfers.
//   * Control channel: a Unix stream socket per decode worker
//     (socket_dir/tandem-kv-<worker>-<epoch>.sock), one connection per destination (SocketChannel);
//     the socket closing is how each side learns that the other died.
//   * Block mover (one-sided): the destination's pool is opened (cudaIpcOpenMemHandle) only at
//     the first write, i.e. after the handshake accepted our epoch and the lease is pinned, so a
//     restarted peer's stale handle is never opened; mappings are cached per destination worker
//     (a new epoch replaces the old one once no transfer uses it) and closed when their owner's
//     socket stops answering (checked at most every 10 s when connecting). Consecutive blocks
//     that are consecutive at the destination too go in one copy. Flush waits for the copies.
//   * Same process (mixed role, tests): the endpoint's process nonce equals ours, so the owner's
//     pointer is used directly (a CUDA IPC handle cannot be opened in the process that made it).
//
// Limits, stated plainly: CUDA IPC writes are one-sided, the receiver cannot vet them. A sender
// that dies with copies queued is torn down by the driver, but the receiver may see the socket
// close a moment before the driver has stopped those copies; and a sender stopped (SIGSTOP) for
// longer than lease_grace past its deadline could still write after the lease was ended. Keep
// lease_grace well above a stream synchronization.
//
// Thread-safety: as medium.h. Ownership: owns its PoolAccess; the pool memory is not owned.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/time/time.h"
#include "transfer/cuda_ipc/cuda_ipc_wire.h"
#include "transfer/cuda_ipc/pool_access.h"
#include "transfer/cuda_ipc/socket_channel.h"
#include "transfer/protocol/medium.h"
#include "transfer/protocol/task_loop.h"

namespace tandem::transfer {

struct CudaIpcMediumOptions {
  std::string worker_id;
  uint64_t epoch = 0;
  uint8_t* block0 = nullptr;  // the local pool (device memory); published for the same process
  int32_t device = 0;
  int64_t num_blocks = 0;
  int64_t bytes_per_block = 0;
  bool accept_inbound = false;       // decode side: export the pool and listen
  std::string socket_dir = "/tmp";   // shared by both processes
  // How long an accepted connection may take to send its first message.
  absl::Duration handshake_timeout = absl::Seconds(10);
};

class CudaIpcMedium final : public TaskLoopMedium {
 public:
  CudaIpcMedium(const CudaIpcMediumOptions& options, std::unique_ptr<PoolAccess> pool);

  absl::Status Start(MediumEvents* events) override;
  void Stop() override;
  std::string address() const override { return address_; }
  wire::DataPath data_path() const override { return wire::DataPath::kOneSided; }
  absl::StatusOr<PeerInfo> Resolve(const KvEndpoint& endpoint) override;
  absl::StatusOr<WriteFence> CaptureFence() override { return pool_->CaptureFence(); }
  // Control: a Unix socket connection to the destination's control socket.
  absl::StatusOr<ConnectionId> Connect(const KvEndpoint& endpoint, const PeerInfo& peer) override;
  void SendControl(ConnectionId conn, std::string message, Completion on_sent) override;
  void Close(ConnectionId conn) override {
    channel_->Close(conn);
    outbound_.erase(conn);
  }
  // Data: device-to-device copies into the destination's opened pool; Flush waits for them.
  void WriteBlocks(ConnectionId conn, uint64_t transfer_id, std::vector<BlockWrite> writes,
                   WriteFence fence, Completion on_done) override;
  void Flush(ConnectionId conn, Completion on_done) override;

 private:
  struct Mapping {
    uint64_t epoch = 0;
    std::string socket_path;  // the owner's control socket: gone when the owner is
    std::shared_ptr<uint8_t> block0;
  };
  struct Outbound {
    cuda_ipc::EndpointAddress address;
    std::string worker_id;
    std::shared_ptr<Mapping> mapping;  // opened at the first write
  };

  absl::StatusOr<std::shared_ptr<Mapping>> OpenMapping(const Outbound& peer);
  void SweepMappings();
  // Closes `conn` and reports it lost (deferred); once.
  void ReportLost(ConnectionId conn, const absl::Status& status);

  const CudaIpcMediumOptions options_;
  const std::unique_ptr<PoolAccess> pool_;
  std::string address_;
  std::unique_ptr<SocketChannel> channel_;  // closed before the loop (a base) goes

  // The loop's thread only.
  std::unordered_map<ConnectionId, Outbound> outbound_;
  std::map<std::string, std::shared_ptr<Mapping>> mappings_;  // by destination worker id
  absl::Time last_sweep_ = absl::InfinitePast();
};

}  // namespace tandem::transfer
