// What UcxKvTransport puts on the wire: the endpoint address it publishes and the active
// messages of its transfer protocol. Every decoder checks lengths and returns an error for
// malformed input (bytes from the network never crash the process).
//
// Protocol (sender = the prefill side, receiver = the decode side; see ucx_kv_transport.h):
//   sender -> receiver   kHello  once per connection: layout, the epoch it expects, its address
//   receiver -> sender   kHelloAck  OK, or why it refuses (layout fields, stale epoch)
//   sender -> receiver   kBegin  per transfer: lease id, destination blocks, data path, time left
//   receiver -> sender   kBeginAck  the lease handler's answer
//   sender -> receiver   the blocks: one data message per block (active message id kDataAmId,
//                        header BlockHeader, payload the block; the receiver places it), or
//                        one RMA put per block followed by an endpoint flush
//   sender -> receiver   kEnd  OK with the number of blocks sent, or the error that ended it
//   receiver -> sender   kEndAck  OK once the lease is recorded as filled
//   sender -> receiver   kBye  the sender closes the connection (fails its pinned leases)
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

// Active-message ids: control messages (the first payload byte is the type) and block data.
inline constexpr unsigned kAmId = 0x7a;
inline constexpr unsigned kDataAmId = 0x7b;

// How a transfer's blocks travel (chosen by the sender, announced in kBegin).
enum class DataPath : uint8_t {
  kActiveMessage = 0,  // the receiver places each block (validated against the lease)
  kRmaPut = 1,         // one-sided writes into the registered cache
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

// Everything a peer needs to write into this worker's cache (KvEndpoint::address holds it,
// as "ucx1:" + web-safe base64 of the binary form).
struct EndpointAddress {
  uint64_t epoch = 0;
  uint64_t remote_base = 0;      // address of block 0 in the owner's process
  int64_t num_blocks = 0;
  int64_t bytes_per_block = 0;
  std::string worker_address;    // ucp_worker_get_address
  std::string rkey;              // ucp_rkey_pack of the cache's memory
};
std::string EncodeEndpointAddress(const EndpointAddress& a);
absl::StatusOr<EndpointAddress> DecodeEndpointAddress(std::string_view text);

struct Hello {
  uint64_t sender_epoch = 0;
  uint64_t conn_id = 0;
  std::string sender_worker_id;
  std::string sender_address;  // the sender's ucp worker address, for the receiver's replies
  uint64_t expected_epoch = 0;
  KvLayoutInfo layout;
};

// Acknowledgements: the status of the step (OK or the refusal).
struct Ack {
  MessageType type = MessageType::kHelloAck;  // kHelloAck, kBeginAck or kEndAck
  uint64_t conn_id = 0;
  uint64_t transfer_id = 0;  // 0 for kHelloAck
  absl::Status status;
};

struct Begin {
  uint64_t sender_epoch = 0;
  uint64_t conn_id = 0;
  uint64_t transfer_id = 0;
  std::string lease_id;
  int32_t num_blocks = 0;
  int64_t remaining_ms = 0;  // time left to the sender's deadline (clocks are not compared)
  DataPath data_path = DataPath::kActiveMessage;
  std::vector<int32_t> blocks;  // destination block of logical block i (kActiveMessage)
};

// Header of one block's data message.
struct BlockHeader {
  uint64_t sender_epoch = 0;
  uint64_t conn_id = 0;
  uint64_t transfer_id = 0;
  int32_t index = 0;  // logical block of the lease
};

struct End {
  uint64_t sender_epoch = 0;
  uint64_t conn_id = 0;
  uint64_t transfer_id = 0;
  absl::Status status;  // OK: every block was written and flushed
  int64_t blocks_sent = 0;
};

struct Bye {
  uint64_t sender_epoch = 0;
  uint64_t conn_id = 0;
};

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
