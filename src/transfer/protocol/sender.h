// The sending (prefill) half of the KV hand-off protocol, over any medium (medium.h).
//
// Per destination (its epoch and the medium's peer key) one connection is opened on first use
// and reused; its handshake (kHello: layout, expected epoch) must be accepted before any transfer
// on it begins, within `handshake_timeout`. Per transfer: kBegin asks the destination to pin the
// lease; block writes wait for that (a lease the destination has not pinned may still hold
// another request's KV) and then proceed while the caller computes its next chunk; Finish waits
// until every write completed (and, on a one-sided medium, the connection is flushed), sends
// kEnd(OK, count, each block's checksum) and reports the kEndAck. Any failure (deadline, peer gone, refusal, write
// error, bad Send, abandonment) fails the transfer and, when the lease was pinned and the peer is
// reachable, flushes and sends kEnd(error) so that the destination unpins the lease at once
// instead of at its own timeout.
//
// Thread-safety: the medium's thread only (ProtocolTransport posts every call). Ownership: does
// not own the medium.
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
#include "transfer/protocol/medium.h"
#include "transfer/protocol/wire.h"

namespace tandem::transfer {

// "kv transfer request=<id> lease=<lease> to worker=<worker>": what every message about a
// transfer starts with.
std::string TransferContext(const KvDestination& destination);
// `s` with `context` in front of its message, keeping its code.
absl::Status WithContext(const absl::Status& s, std::string_view context);

struct SenderOptions {
  std::string worker_id;
  uint64_t epoch = 0;
  KvLayoutInfo layout;
  absl::Duration handshake_timeout = absl::Seconds(10);
  // The local cache's host memory: kEnd carries each block's BlockDigest read from here. Null: no
  // checksums (turned off, or a device cache).
  const uint8_t* checksum_base = nullptr;
  int64_t bytes_per_block = 0;
};

// A transfer as StartTransfer validated it.
struct OutboundRequest {
  uint64_t id = 0;
  KvDestination destination;
  PeerInfo peer;  // the medium's view of destination.endpoint
  absl::Time deadline;
};

class Sender {
 public:
  // `on_outcome` hears how each transfer whose Finish was answered ended.
  Sender(Medium* medium, SenderOptions options, std::function<void(bool ok)> on_outcome)
      : medium_(medium), options_(std::move(options)), on_outcome_(std::move(on_outcome)) {}

  void Start(OutboundRequest request);
  void Send(uint64_t id, std::vector<BlockCopy> copies, WriteFence fence);
  void Finish(uint64_t id, Completion done);
  // The caller's handle went away; without Finish the transfer is cancelled.
  void Abandon(uint64_t id);
  void Fail(uint64_t id, const absl::Status& status);

  // True for the connections this side opened (their messages are acknowledgements).
  bool Owns(ConnectionId conn) const { return peers_.contains(conn); }
  void OnAck(ConnectionId conn, const wire::Ack& ack);
  void OnConnectionLost(ConnectionId conn, const absl::Status& status);
  // Fails transfers past their deadline, drops stalled handshakes; returns the next deadline.
  absl::Time Tick(absl::Time now);
  // Fails every transfer (CANCELLED) and says goodbye to every peer.
  void Shutdown();

 private:
  struct Peer {
    ConnectionId conn = 0;
    std::string key;
    std::string worker_id;
    bool single_use = false;
    bool ready = false;             // the handshake was accepted
    absl::Time hello_deadline;      // when an unanswered handshake is given up
    std::vector<uint64_t> waiting;  // transfers waiting for the handshake
    int pending = 0;                // kEnd(error) being flushed out
  };
  enum class Stage { kHandshake, kBegin, kActive, kDraining, kEnding };
  struct Batch {
    std::vector<BlockCopy> copies;
    WriteFence fence;
  };
  struct Transfer {
    uint64_t id = 0;
    KvDestination destination;
    std::string context;  // TransferContext(destination)
    absl::Time deadline;
    ConnectionId conn = 0;
    Stage stage = Stage::kHandshake;
    std::vector<Batch> queued;  // Sends before the lease was pinned
    int64_t blocks_sent = 0;    // block writes issued
    std::vector<uint64_t> digests;  // by logical block, as written (checksums on)
    int64_t in_flight = 0;      // WriteBlocks calls not yet complete
    bool flushing = false;      // one-sided: the drain's Flush has not completed yet
    bool pinned = false;        // the destination pinned the lease and has not been told the end
    bool failed = false;
    absl::Status outcome;       // why it failed (valid when `failed`)
    bool finish_requested = false;
    bool abandoned = false;
    Completion done;
  };

  static std::string_view StageName(Stage s);
  Transfer* Find(uint64_t id);
  Peer* FindPeer(ConnectionId conn);
  absl::StatusOr<Peer*> GetOrConnect(const OutboundRequest& request);
  void SendBegin(Transfer& t);
  void WriteBlocks(Transfer& t, Batch batch);
  void OnWritten(uint64_t id, const absl::Status& s);
  // Flushes one-sided writes at once; kEnd(OK) goes once the flush and every write completed.
  void StartDrain(Transfer& t);
  void MaybeEnd(Transfer& t);
  void SendEnd(Transfer& t);
  void FailTransfer(Transfer& t, const absl::Status& status);
  void Complete(Transfer& t, const absl::Status& status);
  void MaybeForget(Transfer& t);
  // Flushes the connection, then tells the destination that `transfer_id` failed.
  void SendEndFailure(ConnectionId conn, uint64_t transfer_id, const absl::Status& status);
  // Closes the connection and fails every transfer that uses it.
  void DropPeer(ConnectionId conn, const absl::Status& status);
  // Says goodbye (if the handshake was accepted) and closes the connection.
  void ClosePeer(ConnectionId conn);
  bool HasTransfers(ConnectionId conn) const;
  void OnHelloAck(ConnectionId conn, const wire::Ack& ack);
  void OnBeginAck(ConnectionId conn, const wire::Ack& ack);
  void OnEndAck(ConnectionId conn, const wire::Ack& ack);
  void TickPeers(absl::Time now);

  Medium* const medium_;
  const SenderOptions options_;
  const std::function<void(bool)> on_outcome_;
  std::unordered_map<ConnectionId, std::unique_ptr<Peer>> peers_;
  StringMap<ConnectionId> peer_by_key_;  // (expected epoch, peer key)
  std::unordered_map<uint64_t, std::unique_ptr<Transfer>> transfers_;
};

}  // namespace tandem::transfer
