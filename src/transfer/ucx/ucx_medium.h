// The UCX medium: a UcxWorkerLoop (one progress thread owning the UCP context and worker), the
// host KV cache registered once (ucp_mem_map) for remote access, and
//   * control channel: one endpoint (peer error handling, UCX keepalive) from the connecting side,
//     and one back from the accepting side, opened to the worker address that the connector's
//     first messages carry (ucx_wire.h routes every message to its connection); an endpoint
//     error is the connection's loss.
//   * block mover, by `data_path`:
//     kActiveMessage (kReceiverPlaced): one active message per block (eager for small blocks,
//       rendezvous zero-copy for large ones: RDMA get on verbs, pipelined over TCP); the
//       receiver vets each block (MediumEvents::OnBlockOffered) and places it in its cache.
//     kRmaPut (kOneSided): one ucp_put_nbx per block into the destination's registered cache at
//       remote base + dst_block * bytes_per_block; Flush is an endpoint flush (remote completion).
//       The receiver's CPU is not involved and cannot vet the writes. Use it only where UCX has
//       native RMA (RDMA verbs): UCX 1.13 emulates puts over TCP with active messages whose
//       target side aborts the receiving process when the sender dies mid-put, and with peer
//       error handling it selects no shared-memory transport.
//
// Thread-safety: as medium.h (everything UCX runs on the loop's thread). Ownership: the cache is
// not owned and must outlive the medium.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "tandem/kv_transport.h"
#include "transfer/protocol/medium.h"
#include "transfer/ucx/ucx_worker_loop.h"
#include "ucp/api/ucp.h"

namespace tandem::transfer {

enum class UcxDataPath { kActiveMessage, kRmaPut };

struct UcxMediumOptions {
  KvCacheStorage* cache = nullptr;  // host memory; registered for remote access
  std::string worker_id;
  uint64_t epoch = 0;       // published in the address; identifies our connections to peers
  std::string transports;   // UCX_TLS (see UcxWorkerLoopOptions)
  UcxDataPath data_path = UcxDataPath::kActiveMessage;
  absl::Duration keepalive_interval = absl::Seconds(1);
};

class UcxMedium final : public Medium {
 public:
  explicit UcxMedium(const UcxMediumOptions& options);

  absl::Status Start(MediumEvents* events) override;
  void Stop() override;
  bool Post(std::function<void()> task) override { return loop_->Post(std::move(task)); }
  bool OnThread() const override { return loop_->OnLoopThread(); }
  std::string address() const override { return address_; }
  wire::DataPath data_path() const override;
  absl::StatusOr<PeerInfo> Resolve(const KvEndpoint& endpoint) override;
  // Control: an endpoint to the peer's worker address; the peer answers on one back to ours.
  absl::StatusOr<ConnectionId> Connect(const KvEndpoint& endpoint, const PeerInfo& peer) override;
  void SendControl(ConnectionId conn, std::string message, Completion on_sent) override;
  void Close(ConnectionId conn) override;
  // Data: one active message (or put) per block; Flush is an endpoint flush.
  void WriteBlocks(ConnectionId conn, uint64_t transfer_id, std::vector<BlockWrite> writes,
                   WriteFence fence, Completion on_done) override;
  void Flush(ConnectionId conn, Completion on_done) override;

 private:
  struct Conn {
    ucp_ep_h ep = nullptr;
    bool outbound = false;
    bool lost = false;  // the endpoint failed: nothing more is delivered for it
    // Outbound: the destination's cache, and whether it has answered (then our address is known).
    ucp_rkey_h rkey = nullptr;
    uint64_t remote_base = 0;
    bool heard = false;
    // Inbound: the connector's (epoch, connection id).
    std::pair<uint64_t, uint64_t> origin;
  };

  absl::Status RegisterCache(UcxWorkerLoop& loop);
  Conn* Find(ConnectionId conn);
  // Marks `conn` lost and tells the protocol.
  void Lost(ConnectionId conn, const absl::Status& status);
  void OnControl(std::string_view frame);
  // The inbound connection of (origin, conn), opened back to `reply_address` if new; 0 if none.
  ConnectionId Accept(const std::pair<uint64_t, uint64_t>& origin, const std::string& reply_address);
  ucs_status_t OnData(std::string_view header, void* data, size_t length, bool rndv);

  const UcxMediumOptions options_;
  uint8_t* const base_;
  const int64_t num_blocks_;
  const int64_t bytes_per_block_;
  std::unique_ptr<UcxWorkerLoop> owned_loop_;
  UcxWorkerLoop* loop_ = nullptr;  // set on the loop thread before any handler runs
  MediumEvents* events_ = nullptr;
  std::string address_;

  // The loop's thread only.
  ucp_mem_h memh_ = nullptr;
  std::string packed_rkey_;
  std::unordered_map<ConnectionId, Conn> conns_;
  std::map<std::pair<uint64_t, uint64_t>, ConnectionId> inbound_;
  ConnectionId next_conn_ = 1;
};

}  // namespace tandem::transfer
