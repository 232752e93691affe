// The interface a KV transfer medium implements. The hand-off protocol (handshake, lease pinning,
// deadlines, end-once, failure propagation: sender.h, receiver.h, protocol_transport.h) runs once,
// over any medium; a medium only provides
//   * a thread the protocol runs on (Post; OnTick for deadlines),
//   * a control channel: connect to a peer's endpoint, send a control message (bytes of
//     wire.h), receive messages, learn that a connection is lost, close it,
//   * a block mover: write these local blocks to those remote blocks, report completion, flush.
//
// A medium may rely on:
//   * Start and Stop are called once each, Stop not on the medium's thread. Post, OnThread,
//     address, data_path, Resolve and CaptureFence may be called from any thread; every other
//     method only on the medium's thread.
//   * The protocol sends only on connections it opened (Connect) or that delivered a message
//     to it, never after Close; WriteBlocks and Flush only on connections it opened.
//   * WriteBlocks names local blocks inside the local cache and, for each, the destination block
//     that the destination's lease holds for that logical block (already checked against the
//     destination's cache size where the medium's Resolve told it).
//   * The source blocks of a write stay unchanged until the transfer's end (the KvTransfer
//     contract).
//
// A medium must guarantee:
//   * MediumEvents are delivered on its thread, one at a time, never inside a call the protocol
//     is making (defer them), except OnBlockOffered, which may run inside the medium's receive
//     path: it calls nothing on the medium.
//   * A connection appears at the receiving end with its first message. Control messages on a
//     connection arrive whole and in the order they were sent; those sent before Close arrive
//     before the other end learns that it closed. A connection that fails is reported once
//     (OnConnectionLost) at each end that can tell; no message is delivered for a connection
//     after that report or after Close (OnBlockPlaced still follows every block that
//     OnBlockOffered accepted: the receiver waits for it before it hands the lease back).
//   * Every Completion it is given runs at most once, on its thread, never inside the call that
//     took it. Completions still pending when the medium stops may be dropped.
//   * kReceiverPlaced (data_path): every block written reaches the receiver's OnBlockOffered
//     (and, when placed, OnBlockPlaced) or fails its write. kOneSided: Flush(conn) completes only
//     once every write issued on `conn` before it (whether its WriteBlocks completed or not) is
//     in the destination's memory.
//   * OnTick(now) runs after events and again no later than the time it last returned.
//   * Stop runs MediumEvents::OnShutdown on its thread (the protocol may still send: kEnd,
//     kBye), lets queued sends go out for a short while, closes every connection and joins its
//     thread; Post returns false from the moment Stop begins.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/kv_transport.h"
#include "transfer/protocol/wire.h"

namespace tandem::transfer {

// A connection of one medium (unique within it, inbound and outbound alike).
using ConnectionId = uint64_t;
using Completion = std::function<void(absl::Status)>;
// Whatever a medium must capture on the caller's thread when Send is called, handed back with
// the writes (a GPU medium records an event on the caller's stream). Empty for host media.
using WriteFence = std::shared_ptr<void>;

// One block to write: local `src_block` to the destination's `dst_block` (logical `index`).
struct BlockWrite {
  int32_t src_block = 0;
  int32_t index = 0;
  int32_t dst_block = 0;
};

// A destination as the medium understands its KvEndpoint::address.
struct PeerInfo {
  // Equal keys: the same peer process incarnation, reached over one connection.
  std::string key;
  int64_t num_blocks = 0;       // of the destination's cache; 0: not known (the receiver checks)
  int64_t bytes_per_block = 0;  // 0: not known
  bool single_use = false;      // close the connection once its transfer is over
};

// What the protocol hears from its medium (implemented by the protocol, see the header comment).
class MediumEvents {
 public:
  virtual ~MediumEvents() = default;
  virtual void OnMessage(ConnectionId conn, std::string_view payload) = 0;
  virtual void OnConnectionLost(ConnectionId conn, const absl::Status& status) = 0;
  // A block arrived for `header` on `conn`: where it goes (the destination block of the lease
  // this connection pinned), or why not (the medium drops it and fails the sender's write where
  // it can). A block accepted here is reported by OnBlockPlaced once it is in place (or failed).
  virtual absl::StatusOr<int32_t> OnBlockOffered(ConnectionId conn, const wire::BlockHeader& header,
                                                 size_t length) = 0;
  virtual void OnBlockPlaced(ConnectionId conn, uint64_t transfer_id, const absl::Status& status) = 0;
  // Deadlines; returns when it next needs to run.
  virtual absl::Time OnTick(absl::Time now) = 0;
  virtual void OnShutdown() = 0;
};

class Medium {
 public:
  virtual ~Medium() = default;

  // --- lifecycle and thread
  // Starts the thread; from now on `events` (not owned, outlives Stop) hears everything.
  virtual absl::Status Start(MediumEvents* events) = 0;
  virtual void Stop() = 0;
  virtual bool Post(std::function<void()> task) = 0;
  virtual bool OnThread() const = 0;

  // --- addresses (any thread)
  // This medium's KvEndpoint::address (after Start).
  virtual std::string address() const = 0;
  virtual wire::DataPath data_path() const = 0;
  // Decodes a destination's endpoint; an error refuses the transfer at once (its code is kept).
  virtual absl::StatusOr<PeerInfo> Resolve(const KvEndpoint& endpoint) = 0;
  // Called on the caller's thread by KvTransfer::Send (see WriteFence).
  virtual absl::StatusOr<WriteFence> CaptureFence() { return WriteFence(); }

  // --- control channel
  virtual absl::StatusOr<ConnectionId> Connect(const KvEndpoint& endpoint, const PeerInfo& peer) = 0;
  // `on_sent` (may be empty) learns whether the message left.
  virtual void SendControl(ConnectionId conn, std::string message, Completion on_sent) = 0;
  virtual void Close(ConnectionId conn) = 0;

  // --- block mover
  // `on_done` runs once for the whole call: OK when every write completed as far as this side
  // can tell, else the first error.
  virtual void WriteBlocks(ConnectionId conn, uint64_t transfer_id, std::vector<BlockWrite> writes,
                           WriteFence fence, Completion on_done) = 0;
  virtual void Flush(ConnectionId conn, Completion on_done) = 0;
  // Receiver side, before a lease is reported filled: makes its blocks final (a staging medium
  // moves them from its mirror to the device). An error fails the lease.
  virtual absl::Status CommitBlocks(std::span<const int32_t> blocks) {
    (void)blocks;
    return absl::OkStatus();
  }
};

}  // namespace tandem::transfer
