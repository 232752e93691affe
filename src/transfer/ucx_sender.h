// The sending (prefill) half of UcxKvTransport: connections to destination workers and the
// outbound transfers over them. Per destination (worker address, epoch) one endpoint is
// created on first use and reused; its handshake (kHello) must be accepted before any
// transfer on it begins. Per transfer: kBegin pins the lease; block writes wait for that (a
// lease the destination has not pinned may already hold another request's KV); each Send
// sends one data message (or issues one RMA put) per block; Finish waits for every block to
// be at the destination (data messages complete / endpoint flush), sends kEnd(OK, count) and
// reports the kEndAck. Any failure (deadline, peer gone, refusal, write error) fails the
// transfer and, when the lease was pinned and the peer is reachable, flushes and sends
// kEnd(error) so the destination unpins the lease at once instead of at its own timeout.
//
// Thread-safety: loop thread only (UcxKvTransport posts every call). Ownership: owns its
// peers' endpoints (through the loop) and remote keys; does not own the loop or the cache.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/strings.h"
#include "tandem/kv_transport.h"
#include "transfer/ucx_local_cache.h"
#include "transfer/ucx_wire.h"
#include "transfer/ucx_worker_loop.h"

namespace tandem::transfer {

// A transfer as StartTransfer validated it.
struct OutboundRequest {
  uint64_t id = 0;
  KvDestination destination;
  wire::EndpointAddress address;  // decoded destination.endpoint.address
  absl::Time deadline;
};

class UcxSender {
 public:
  UcxSender(UcxWorkerLoop* loop, const UcxLocalCache* local, wire::DataPath data_path)
      : loop_(loop), local_(local), data_path_(data_path) {}
  ~UcxSender();

  void Start(OutboundRequest request);
  void Send(uint64_t id, const std::vector<BlockCopy>& copies);
  void Finish(uint64_t id, std::function<void(absl::Status)> done);
  // The caller's handle went away; without Finish the transfer is cancelled.
  void Abandon(uint64_t id);
  void Fail(uint64_t id, const absl::Status& status);
  void OnAck(const wire::Ack& ack);
  // Fails transfers past their deadline; returns the next deadline.
  absl::Time Tick(absl::Time now);
  // Fails every transfer (CANCELLED) and says goodbye to every peer.
  void Shutdown();

 private:
  struct Peer {
    uint64_t conn_id = 0;
    std::string key;
    std::string worker_id;
    wire::EndpointAddress address;
    ucp_ep_h ep = nullptr;
    ucp_rkey_h rkey = nullptr;
    bool ready = false;             // the handshake was accepted
    std::vector<uint64_t> waiting;  // transfers waiting for the handshake
  };
  enum class Stage { kHandshake, kBegin, kActive, kDraining, kEnding };
  struct Transfer {
    uint64_t id = 0;
    KvDestination destination;
    absl::Time deadline;
    uint64_t conn_id = 0;
    Stage stage = Stage::kHandshake;
    std::vector<BlockCopy> queued;  // Sends before the lease was pinned
    int64_t blocks_sent = 0;        // block writes issued
    int64_t in_flight = 0;          // data messages not yet complete
    bool pinned = false;            // the destination pinned the lease and has not been told the end
    bool failed = false;
    absl::Status outcome;           // why it failed (valid when `failed`)
    bool finish_requested = false;
    bool abandoned = false;
    std::function<void(absl::Status)> done;
  };

  static std::string Context(const Transfer& t);
  static std::string_view StageName(Stage s);
  Transfer* Find(uint64_t id);
  Peer* FindPeer(uint64_t conn_id);
  absl::StatusOr<Peer*> GetOrConnect(const OutboundRequest& request);
  void SendBegin(Transfer& t);
  void WriteBlocks(Transfer& t, const std::vector<BlockCopy>& copies);
  // Waits until every block is at the destination, then sends kEnd(OK).
  void StartDrain(Transfer& t);
  void SendEnd(Transfer& t);
  void FailTransfer(Transfer& t, const absl::Status& status);
  void Complete(Transfer& t, const absl::Status& status);
  void MaybeForget(Transfer& t);
  // Flushes the peer's endpoint, then tells the destination that `transfer_id` failed.
  void SendEndFailure(uint64_t conn_id, uint64_t transfer_id, const absl::Status& status);
  // Releases the remote key and closes the endpoint (after a flush unless it failed).
  void ClosePeer(Peer& peer);
  // Closes the connection and fails every transfer that uses it.
  void DropPeer(uint64_t conn_id, const absl::Status& status);
  void OnHelloAck(const wire::Ack& ack);
  void OnBeginAck(const wire::Ack& ack);
  void OnEndAck(const wire::Ack& ack);

  UcxWorkerLoop* const loop_;
  const UcxLocalCache* const local_;
  const wire::DataPath data_path_;
  uint64_t next_conn_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Peer>> peers_;  // by conn_id
  StringMap<uint64_t> peer_by_key_;                             // (worker address, epoch)
  std::unordered_map<uint64_t, std::unique_ptr<Transfer>> transfers_;
};

}  // namespace tandem::transfer
