// The receiving (decode) half of UcxKvTransport: answers handshakes, pins and unpins leases
// through the KvLeaseHandler, and places arriving blocks (wire::DataPath::kActiveMessage):
// a block is accepted only for a pinned lease of the connection that pinned it and only into
// one of that lease's blocks; a lease ends OK only when every block the sender counted has
// arrived and no receive is still running (so decode never starts on partial KV). With
// kRmaPut the sender writes the registered cache itself and only the messages are seen here.
//
// A handshake is refused when the sender's layout differs (the message names the fields) or
// when it expects another epoch (a stale handle to a restarted worker). For every sender
// connection the receiver opens its own endpoint back (peer error handling), used for replies
// and to notice the sender's death: then, or when kBye arrives, or when a lease outlives the
// sender's deadline plus `lease_grace`, every lease pinned by that sender is ended with an
// error (TransferEnded is called exactly once per pinned lease), so no lease stays pinned.
//
// Thread-safety: loop thread only. Ownership: does not own the handler, which must outlive
// the transport.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tandem/kv_transport.h"
#include "transfer/ucx_local_cache.h"
#include "transfer/ucx_wire.h"
#include "transfer/ucx_worker_loop.h"

namespace tandem::transfer {

class UcxReceiver {
 public:
  UcxReceiver(UcxWorkerLoop* loop, const UcxLocalCache* local, KvLeaseHandler* handler,
              absl::Duration lease_grace)
      : loop_(loop), local_(local), handler_(handler), lease_grace_(lease_grace) {}

  void OnHello(const wire::Hello& m);
  void OnBegin(const wire::Begin& m);
  void OnEnd(const wire::End& m);
  void OnBye(const wire::Bye& m);
  // The loop's data handler (runs inside the UCX callback).
  ucs_status_t OnBlock(std::string_view header, void* data, size_t length, bool rndv);
  // Ends leases whose sender is overdue; returns the next lease deadline.
  absl::Time Tick(absl::Time now);
  // Ends every pinned lease with UNAVAILABLE.
  void Shutdown();

 private:
  using PeerKey = std::pair<uint64_t, uint64_t>;                // (sender epoch, conn id)
  using LeaseKey = std::tuple<uint64_t, uint64_t, uint64_t>;    // + transfer id
  struct InboundPeer {
    ucp_ep_h reply_ep = nullptr;
    std::string worker_id;
  };
  struct Lease {
    std::string lease_id;
    absl::Time deadline;
    std::string sender;  // worker id, for messages
    wire::DataPath data_path = wire::DataPath::kActiveMessage;
    std::vector<int32_t> blocks;   // destination block of each logical block
    int64_t received = 0;          // blocks placed
    int64_t receiving = 0;         // rendezvous receives still running
    absl::Status data_error;       // first failed receive
    bool ending = false;           // decided; waits for `receiving` to reach 0
    absl::Status end_status;       // the decision (valid when `ending`)
    int64_t blocks_sent = 0;       // from kEnd(OK), checked against `received`
    bool ack_end = false;          // a kEnd asked for the decision: send kEndAck with it
  };

  void Reply(const PeerKey& key, wire::MessageType type, uint64_t transfer_id,
             const absl::Status& status);
  absl::Status CheckHello(const wire::Hello& m) const;
  // Ends every lease of `key` with `status` and forgets the connection.
  void DropPeer(const PeerKey& key, const absl::Status& status);
  // Ends the lease with `status` once no receive into it is running (at once if none is).
  void EndLease(std::map<LeaseKey, Lease>::iterator it, const absl::Status& status);
  // Calls TransferEnded and forgets the lease.
  void CompleteLease(std::map<LeaseKey, Lease>::iterator it);
  void OnBlockReceived(const LeaseKey& key, const absl::Status& status);
  // True once the lease's outcome is final and no receive writes into it.
  bool Settled(const Lease& lease) const;
  void MaybeComplete(const LeaseKey& key);

  UcxWorkerLoop* const loop_;
  const UcxLocalCache* const local_;
  KvLeaseHandler* const handler_;
  const absl::Duration lease_grace_;
  std::map<PeerKey, InboundPeer> peers_;
  std::map<LeaseKey, Lease> leases_;
};

}  // namespace tandem::transfer
