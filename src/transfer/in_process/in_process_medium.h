// The in-process medium: transports of one test process reach each other through an
// InProcessKvHub. A connection is a link between two transports' threads: control messages are
// posted to the other transport's thread, and each block is placed on the destination's thread
// (vetted by its receiver, then memcpy'd from the source cache), its completion posted back. A
// connection with an InProcessFault misbehaves as the fault says (see in_process_kv_transport.h).
//
// Thread-safety: as medium.h. Ownership: the cache is not owned; the hub is shared.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "common/strings.h"
#include "transfer/in_process/in_process_kv_transport.h"
#include "transfer/protocol/medium.h"
#include "transfer/protocol/task_loop.h"

namespace tandem::transfer {

inline constexpr std::string_view kInProcessAddressPrefix = "inproc://";

namespace internal {

struct InProcessLink;

// One transport's presence in the hub: its cache, and the way to run work on its thread.
struct InProcessStation {
  std::string worker_id;
  uint8_t* base = nullptr;  // block 0 of the cache
  int64_t bytes_per_block = 0;
  // Held while work is posted to the medium or its cache is read, so that neither goes away
  // under it.
  std::mutex mu;
  InProcessMedium* medium ABSL_GUARDED_BY(mu) = nullptr;  // null once it stopped

  // Runs `task` on the station's thread no earlier than `at`; false once it stopped.
  bool Post(std::function<void(InProcessMedium&)> task, absl::Time at = absl::InfinitePast());
};

}  // namespace internal

class InProcessMedium final : public TaskLoopMedium {
 public:
  InProcessMedium(std::shared_ptr<InProcessKvHub> hub, std::string worker_id, KvCacheStorage* cache);

  // Applies `fault` to the transfers resolved after this call (kNone clears it).
  void InjectFault(const InProcessFault& fault);

  absl::Status Start(MediumEvents* events) override;
  void Stop() override;
  std::string address() const override { return address_; }
  wire::DataPath data_path() const override { return wire::DataPath::kReceiverPlaced; }
  absl::StatusOr<PeerInfo> Resolve(const KvEndpoint& endpoint) override;
  // Control: a link to the destination's station, messages posted to its thread.
  absl::StatusOr<ConnectionId> Connect(const KvEndpoint& endpoint, const PeerInfo& peer) override;
  void SendControl(ConnectionId conn, std::string message, Completion on_sent) override;
  void Close(ConnectionId conn) override { Disconnect(conn, ClosedByPeer()); }
  // Data: each block offered to the destination's receiver and memcpy'd on its thread.
  void WriteBlocks(ConnectionId conn, uint64_t transfer_id, std::vector<BlockWrite> writes,
                   WriteFence fence, Completion on_done) override;
  // Blocks are placed in order with the control messages: nothing to wait for.
  void Flush(ConnectionId, Completion on_done) override {
    loop().Defer([on_done = std::move(on_done)] { on_done(absl::OkStatus()); });
  }

 private:
  friend struct internal::InProcessStation;
  using Link = internal::InProcessLink;
  std::shared_ptr<Link> FindLink(ConnectionId conn) const;
  bool Outbound(ConnectionId conn, const Link& link) const;
  static absl::Status ClosedByPeer();
  // Runs `task` on the other end of `conn` (later under a kDelay fault); false if it is gone.
  bool ToPeer(ConnectionId conn, const Link& link, std::function<void(InProcessMedium&)> task);
  // Forgets `conn` and reports it lost (deferred).
  void Lost(ConnectionId conn, const absl::Status& status);
  // Forgets `conn` and tells the other end (with `status`).
  void Disconnect(ConnectionId conn, const absl::Status& status);
  // --- on this thread, sent by the other end of a link
  void ReceiveControl(const std::shared_ptr<Link>& link, const std::string& message);
  void ReceiveReply(const std::shared_ptr<Link>& link, const std::string& message);
  void PlaceBlocks(const std::shared_ptr<Link>& link, uint64_t transfer_id,
                   const std::vector<BlockWrite>& writes, Completion on_done);
  void PeerClosed(const std::shared_ptr<Link>& link, bool at_receiver, const absl::Status& status);

  const std::shared_ptr<InProcessKvHub> hub_;
  const std::shared_ptr<internal::InProcessStation> station_;
  std::string address_;

  std::mutex mu_;
  InProcessFault fault_ ABSL_GUARDED_BY(mu_);
  // Faults taken by Resolve, waiting for their connection (by peer key).
  StringMap<InProcessFault> pending_faults_ ABSL_GUARDED_BY(mu_);
  uint64_t next_fault_ ABSL_GUARDED_BY(mu_) = 0;

  // The loop's thread only.
  std::unordered_map<ConnectionId, std::shared_ptr<Link>> conns_;
  ConnectionId next_conn_ = 1;
};

}  // namespace tandem::transfer
