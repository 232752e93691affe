#include "transfer/protocol/wire.h"

#include "common/strings.h"
#include "transfer/protocol/byte_codec.h"

namespace tandem::transfer::wire {
namespace {

constexpr size_t kMaxField = 1 << 20;  // no field of ours comes near 1 MiB

// Lengths, status codes and layout fields are 4 bytes wide.
constexpr ByteFormat kFormat{.word_bytes = 4, .max_field_bytes = kMaxField};

ByteWriter Message(MessageType type) {
  ByteWriter w(kFormat);
  w.U8(static_cast<uint8_t>(type));
  return w;
}

// OK when every read succeeded and nothing is left over.
absl::Status Done(const ByteReader& r, std::string_view what) {
  if (r.ok() && r.AtEnd()) return absl::OkStatus();
  return absl::InvalidArgumentError(StrCat("malformed kv transfer ", what));
}

// Checks the type byte and returns a reader positioned after it.
absl::StatusOr<ByteReader> Open(std::string_view payload, MessageType expected) {
  if (payload.empty() || static_cast<uint8_t>(payload[0]) != static_cast<uint8_t>(expected)) {
    return absl::InvalidArgumentError("kv transfer message of an unexpected type");
  }
  return ByteReader(payload.substr(1), kFormat);
}

}  // namespace

std::string Encode(const Hello& m) {
  return Message(MessageType::kHello)
      .Bytes(m.sender_worker_id)
      .U64(m.expected_epoch)
      .Layout(m.layout)
      .Take();
}

std::string Encode(const Ack& m) {
  return Message(m.type).U64(m.transfer_id).Status(m.status).Take();
}

std::string Encode(const Begin& m) {
  ByteWriter w = Message(MessageType::kBegin);
  w.U64(m.transfer_id).Bytes(m.lease_id).Bytes(m.request_id).I32(m.num_blocks);
  w.I64(m.remaining_ms).U8(static_cast<uint8_t>(m.data_path));
  w.U32(static_cast<uint32_t>(m.blocks.size()));
  for (int32_t b : m.blocks) w.I32(b);
  return w.Take();
}

std::string Encode(const End& m) {
  ByteWriter w = Message(MessageType::kEnd);
  w.U64(m.transfer_id).Status(m.status).I64(m.blocks_sent);
  if (!m.digests.empty()) {
    w.U32(static_cast<uint32_t>(m.digests.size()));
    for (uint64_t d : m.digests) w.U64(d);
  }
  return w.Take();
}

std::string Encode(const Bye&) { return Message(MessageType::kBye).Take(); }

std::string Encode(const BlockHeader& m) {
  return ByteWriter(kFormat).U64(m.transfer_id).I32(m.index).Take();
}

absl::StatusOr<MessageType> PeekType(std::string_view payload) {
  if (payload.empty()) return absl::InvalidArgumentError("empty kv transfer message");
  const uint8_t t = static_cast<uint8_t>(payload[0]);
  if (t < static_cast<uint8_t>(MessageType::kHello) || t > static_cast<uint8_t>(MessageType::kBye)) {
    return absl::InvalidArgumentError(StrCat("unknown kv transfer message type ", t));
  }
  return static_cast<MessageType>(t);
}

absl::StatusOr<Hello> DecodeHello(std::string_view payload) {
  auto r = Open(payload, MessageType::kHello);
  if (!r.ok()) return r.status();
  Hello m;
  m.sender_worker_id = r->Bytes();
  m.expected_epoch = r->U64();
  m.layout = r->Layout();
  if (absl::Status s = Done(*r, "hello"); !s.ok()) return s;
  return m;
}

absl::StatusOr<Ack> DecodeAck(std::string_view payload) {
  auto type = PeekType(payload);
  if (!type.ok()) return type.status();
  if (*type != MessageType::kHelloAck && *type != MessageType::kBeginAck &&
      *type != MessageType::kEndAck) {
    return absl::InvalidArgumentError("not a kv transfer acknowledgement");
  }
  ByteReader r(payload.substr(1), kFormat);
  Ack m;
  m.type = *type;
  m.transfer_id = r.U64();
  m.status = r.Status();
  if (absl::Status s = Done(r, "acknowledgement"); !s.ok()) return s;
  return m;
}

absl::StatusOr<Begin> DecodeBegin(std::string_view payload) {
  auto r = Open(payload, MessageType::kBegin);
  if (!r.ok()) return r.status();
  Begin m;
  m.transfer_id = r->U64();
  m.lease_id = r->Bytes();
  m.request_id = r->Bytes();
  m.num_blocks = r->I32();
  m.remaining_ms = r->I64();
  const uint8_t path = r->U8();
  const uint32_t count = r->U32();
  if (count > kMaxField / 4) return absl::InvalidArgumentError("kv transfer begin with too many blocks");
  m.blocks.reserve(r->ok() ? count : 0);
  for (uint32_t i = 0; i < count && r->ok(); ++i) m.blocks.push_back(r->I32());
  if (absl::Status s = Done(*r, "begin"); !s.ok()) return s;
  if (path > static_cast<uint8_t>(DataPath::kOneSided)) {
    return absl::InvalidArgumentError("kv transfer begin with an unknown data path");
  }
  m.data_path = static_cast<DataPath>(path);
  if (m.num_blocks < 0 || m.blocks.size() != static_cast<size_t>(m.num_blocks)) {
    return absl::InvalidArgumentError("kv transfer begin whose block list does not match its block count");
  }
  return m;
}

absl::StatusOr<End> DecodeEnd(std::string_view payload) {
  auto r = Open(payload, MessageType::kEnd);
  if (!r.ok()) return r.status();
  End m;
  m.transfer_id = r->U64();
  m.status = r->Status();
  m.blocks_sent = r->I64();
  if (r->ok() && !r->AtEnd()) {
    const uint32_t count = r->U32();
    if (count > r->remaining() / 8) return absl::InvalidArgumentError("kv transfer end with too many checksums");
    m.digests.reserve(r->ok() ? count : 0);
    for (uint32_t i = 0; i < count && r->ok(); ++i) m.digests.push_back(r->U64());
  }
  if (absl::Status s = Done(*r, "end"); !s.ok()) return s;
  if (m.blocks_sent < 0) return absl::InvalidArgumentError("kv transfer end with a negative count");
  return m;
}

absl::StatusOr<Bye> DecodeBye(std::string_view payload) {
  auto r = Open(payload, MessageType::kBye);
  if (!r.ok()) return r.status();
  if (absl::Status s = Done(*r, "bye"); !s.ok()) return s;
  return Bye{};
}

absl::StatusOr<BlockHeader> DecodeBlockHeader(std::string_view header) {
  ByteReader r(header, kFormat);
  BlockHeader m;
  m.transfer_id = r.U64();
  m.index = r.I32();
  if (absl::Status s = Done(r, "block header"); !s.ok()) return s;
  return m;
}

}  // namespace tandem::transfer::wire
