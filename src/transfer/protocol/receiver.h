// The receiving (decode) half of the KV hand-off protocol, over any medium (medium.h): answers
// handshakes, pins and unpins leases through the KvLeaseHandler, and vets the blocks the medium
// lets it see.
//
//   * kHello is refused when the sender's layout differs (the message names the fields) or when
//     it expects another epoch (a stale endpoint of a restarted worker); a refused connection is
//     closed.
//   * kBegin: every destination block must lie inside the cache; then TransferStarting pins the
//     lease (its refusal is the answer).
//   * Blocks (kReceiverPlaced): a block is accepted only for a lease pinned by THIS connection,
//     only at an index inside the lease and only into the destination block the lease holds for
//     it (the sender never chooses the address); a lease ends OK only when every block the
//     sender counted in kEnd has arrived, each logical block at most once, together the first
//     blocks of the lease, and no placement is still running (decode never starts on partial
//     KV; the lease table then checks that the prompt's blocks are all among them). kOneSided: the sender writes the memory itself; only the messages are
//     seen here.
//   * When kEnd(OK) carries checksums (block_digest.h), each block sent must match its checksum
//     in the local cache before the lease is filled (either data path): a corrupted block fails the
//     lease with DATA_LOSS naming it, so decode never runs on damaged KV.
//   * TransferEnded is called exactly once per pinned lease: at kEnd (after the medium's
//     CommitBlocks for an OK end), or with an error when the connection is lost, when the sender
//     says kBye, when the lease outlives the sender's deadline plus `lease_grace`, or at
//     shutdown. So no lease stays pinned.
//
// Thread-safety: the medium's thread only. Ownership: does not own the handler, which must
// outlive the transport.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/kv_transport.h"
#include "transfer/protocol/medium.h"
#include "transfer/protocol/wire.h"

namespace tandem::transfer {

struct ReceiverOptions {
  std::string worker_id;
  uint64_t epoch = 0;
  KvLayoutInfo layout;
  int64_t num_blocks = 0;  // of the local cache
  int64_t bytes_per_block = 0;
  KvLeaseHandler* handler = nullptr;  // null: inbound transfers are refused
  absl::Duration lease_grace = absl::Seconds(5);
  // The local cache's host memory, where the checksums a kEnd carries are checked (null: a
  // device cache; they are not checked).
  const uint8_t* host_base = nullptr;
};

class Receiver {
 public:
  Receiver(Medium* medium, ReceiverOptions options)
      : medium_(medium), options_(std::move(options)) {}

  // A control message of `type` on an inbound connection.
  void OnMessage(ConnectionId conn, wire::MessageType type, std::string_view payload);
  absl::StatusOr<int32_t> OnBlockOffered(ConnectionId conn, const wire::BlockHeader& header,
                                         size_t length);
  void OnBlockPlaced(ConnectionId conn, uint64_t transfer_id, const absl::Status& status);
  void OnConnectionLost(ConnectionId conn, const absl::Status& status);
  // Ends leases whose sender is overdue; returns the next lease deadline.
  absl::Time Tick(absl::Time now);
  // Ends every pinned lease with UNAVAILABLE.
  void Shutdown();

 private:
  using LeaseKey = std::pair<ConnectionId, uint64_t>;  // (connection, transfer id)
  struct Lease {
    std::string lease_id;
    std::string request_id;
    absl::Time deadline;
    std::string sender;  // worker id, for messages
    wire::DataPath data_path = wire::DataPath::kReceiverPlaced;
    std::vector<int32_t> blocks;  // destination block of each logical block
    std::vector<bool> offered;    // logical blocks a message arrived for (each at most once)
    int64_t received = 0;         // blocks placed
    int64_t receiving = 0;        // placements still running
    absl::Status data_error;      // first failed or misfit block
    bool ending = false;          // decided; waits for `receiving` to reach 0
    absl::Status end_status;      // the decision (valid when `ending`)
    int64_t blocks_sent = 0;      // from kEnd(OK), checked against `received`
    std::vector<uint64_t> digests;  // from kEnd(OK): the sender's checksum of each block sent
    bool ack_end = false;         // a kEnd asked for the decision: answer kEndAck with it
  };
  using LeaseMap = std::map<LeaseKey, Lease>;

  void OnHello(ConnectionId conn, const wire::Hello& m);
  void OnBegin(ConnectionId conn, const wire::Begin& m);
  void OnEnd(ConnectionId conn, const wire::End& m);
  void OnBye(ConnectionId conn);
  absl::Status CheckHello(const wire::Hello& m) const;
  absl::Status CheckBegin(const wire::Begin& m) const;
  void Reply(ConnectionId conn, wire::MessageType type, uint64_t transfer_id,
             const absl::Status& status);
  // Ends every lease of `conn` with `status`, forgets the connection and closes it.
  void DropPeer(ConnectionId conn, const absl::Status& status);
  // Ends the lease with `status` once no placement into it is running (at once if none is).
  void EndLease(LeaseMap::iterator it, const absl::Status& status);
  // Calls TransferEnded (and answers kEnd) and forgets the lease.
  void CompleteLease(LeaseMap::iterator it);
  // True once the lease's outcome is final and nothing writes into it.
  bool Settled(const Lease& lease) const;
  void MaybeComplete(const LeaseKey& key);
  static std::string LeaseContext(const Lease& lease);
  // How many of the lease's blocks, from the first, a block message arrived for.
  static int64_t FilledPrefix(const Lease& lease);
  // OK, or DATA_LOSS naming the first block whose bytes here differ from the sender's checksum.
  absl::Status CheckDigests(const Lease& lease) const;

  Medium* const medium_;
  const ReceiverOptions options_;
  std::unordered_map<ConnectionId, std::string> peers_;  // accepted connections: sender worker id
  LeaseMap leases_;
};

}  // namespace tandem::transfer
