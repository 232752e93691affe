// The messages of the KV hand-off protocol, the same on every medium (the medium carries them as
// opaque control messages, see medium.h). Every decoder checks lengths and returns an error for
// malformed input: bytes from the network never crash the process.
//
// Sender = the prefill side, receiver = the decode side; one connection per destination:
//   sender -> receiver   kHello     once per connection: layout, the epoch it expects, its worker id
//   receiver -> sender   kHelloAck  OK, or why it refuses (layout fields named, stale epoch)
//   sender -> receiver   kBegin     per transfer: lease id, request id, destination blocks, the data
//                                   path, time left to the sender's deadline
//   receiver -> sender   kBeginAck  the lease handler's answer (OK: the lease is pinned)
//   sender -> receiver   the blocks, written by the medium's block mover (a BlockHeader travels
//                        with each block where the receiver places it)
//   sender -> receiver   kEnd       OK with the number of blocks written and (unless turned off) the
//                                   checksum of each, or the error that ended it
//   receiver -> sender   kEndAck    OK once the lease is recorded as filled (or why not)
//   sender -> receiver   kBye       the sender closes the connection (its pinned leases end)
// Thread-safety: plain functions and values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tandem/kv_transport.h"

namespace tandem::transfer::wire {

// How a transfer's blocks reach the destination's memory (the medium decides, kBegin says).
enum class DataPath : uint8_t {
  kReceiverPlaced = 0,  // the receiver sees each block and places it (vetted against the lease)
  kOneSided = 1,        // the sender writes the destination's memory; the receiver cannot vet it
};

enum class MessageType : uint8_t {
  kHello = 1,
  kHelloAck = 2,
  kBegin = 3,
  kBeginAck = 4,
  kEnd = 5,
  kEndAck = 6,
  kBye = 7,
};

struct Hello {
  std::string sender_worker_id;
  uint64_t expected_epoch = 0;  // the receiver's epoch as the sender's KvEndpoint says
  KvLayoutInfo layout;          // the sender's
};

// Acknowledgements: the status of the step (OK or the refusal).
struct Ack {
  MessageType type = MessageType::kHelloAck;  // kHelloAck, kBeginAck or kEndAck
  uint64_t transfer_id = 0;                   // 0 for kHelloAck
  absl::Status status;
};

struct Begin {
  uint64_t transfer_id = 0;
  std::string lease_id;
  std::string request_id;  // for log lines
  int32_t num_blocks = 0;
  int64_t remaining_ms = 0;  // time left to the sender's deadline (clocks are not compared)
  DataPath data_path = DataPath::kReceiverPlaced;
  std::vector<int32_t> blocks;  // destination block of logical block i (num_blocks of them)
};

// What travels with one block where the receiver places it.
struct BlockHeader {
  uint64_t transfer_id = 0;
  int32_t index = 0;  // logical block of the lease
};

struct End {
  uint64_t transfer_id = 0;
  absl::Status status;  // OK: every block was written (and, one-sided, flushed)
  int64_t blocks_sent = 0;
  // BlockDigest of logical blocks 0 .. blocks_sent-1 as the sender read them; empty when the
  // sender sends none (checksums off, or its cache is not in host memory). A message without the
  // field (an older sender) decodes with it empty.
  std::vector<uint64_t> digests;
};

struct Bye {};

std::string Encode(const Hello& m);
std::string Encode(const Ack& m);
std::string Encode(const Begin& m);
std::string Encode(const End& m);
std::string Encode(const Bye& m);
std::string Encode(const BlockHeader& m);

// The type of a message (its first byte), or an error for an empty or unknown one.
absl::StatusOr<MessageType> PeekType(std::string_view payload);
absl::StatusOr<Hello> DecodeHello(std::string_view payload);
absl::StatusOr<Ack> DecodeAck(std::string_view payload);
absl::StatusOr<Begin> DecodeBegin(std::string_view payload);
absl::StatusOr<End> DecodeEnd(std::string_view payload);
absl::StatusOr<Bye> DecodeBye(std::string_view payload);
absl::StatusOr<BlockHeader> DecodeBlockHeader(std::string_view header);

}  // namespace tandem::transfer::wire
