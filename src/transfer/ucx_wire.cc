#include "transfer/ucx_wire.h"

#include <cstring>

#include "absl/strings/escaping.h"
#include "common/strings.h"

namespace tandem::transfer::wire {
namespace {

constexpr std::string_view kAddressPrefix = "ucx1:";
constexpr uint32_t kAddressMagic = 0x544b5631;  // "TKV1"
constexpr size_t kMaxField = 1 << 20;           // no field of ours comes near 1 MiB

// Little-endian fixed-width encoding.
class Writer {
 public:
  explicit Writer(MessageType type) { U8(static_cast<uint8_t>(type)); }
  Writer() = default;
  Writer& U8(uint8_t v) { return Raw(&v, 1); }
  Writer& U32(uint32_t v) { return Int(v); }
  Writer& U64(uint64_t v) { return Int(v); }
  Writer& I32(int32_t v) { return Int(static_cast<uint32_t>(v)); }
  Writer& I64(int64_t v) { return Int(static_cast<uint64_t>(v)); }
  Writer& Bytes(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    return Raw(s.data(), s.size());
  }
  Writer& Status(const absl::Status& s) {
    U32(static_cast<uint32_t>(s.code()));
    return Bytes(ToStd(s.message()));
  }
  Writer& Layout(const KvLayoutInfo& l) {
    Bytes(l.model_id);
    I32(l.layout.num_layers).I32(l.layout.num_kv_heads).I32(l.layout.head_dim);
    I32(l.layout.block_size).U8(static_cast<uint8_t>(l.layout.dtype));
    return Bytes(l.block_format);
  }
  std::string Take() { return std::move(out_); }

 private:
  template <typename T>
  Writer& Int(T v) {
    uint8_t b[sizeof(T)];
    for (size_t i = 0; i < sizeof(T); ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    return Raw(b, sizeof(T));
  }
  Writer& Raw(const void* p, size_t n) {
    out_.append(static_cast<const char*>(p), n);
    return *this;
  }
  std::string out_;
};

// Reads what Writer wrote; the first failure sticks and every later read returns zero.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  uint8_t U8() { return static_cast<uint8_t>(Int<uint8_t>()); }
  uint32_t U32() { return Int<uint32_t>(); }
  uint64_t U64() { return Int<uint64_t>(); }
  int32_t I32() { return static_cast<int32_t>(Int<uint32_t>()); }
  int64_t I64() { return static_cast<int64_t>(Int<uint64_t>()); }
  std::string Bytes() {
    const uint32_t n = U32();
    if (!ok_ || n > kMaxField || n > in_.size()) {
      ok_ = false;
      return {};
    }
    std::string s(in_.substr(0, n));
    in_.remove_prefix(n);
    return s;
  }
  absl::Status Status() {
    const uint32_t code = U32();
    std::string message = Bytes();
    if (!ok_) return absl::OkStatus();
    if (code > static_cast<uint32_t>(absl::StatusCode::kUnauthenticated)) {
      ok_ = false;
      return absl::OkStatus();
    }
    return absl::Status(static_cast<absl::StatusCode>(code), message);
  }
  KvLayoutInfo Layout() {
    KvLayoutInfo l;
    l.model_id = Bytes();
    l.layout.num_layers = I32();
    l.layout.num_kv_heads = I32();
    l.layout.head_dim = I32();
    l.layout.block_size = I32();
    const uint8_t dtype = U8();
    if (dtype > static_cast<uint8_t>(DType::kBF16)) ok_ = false;
    l.layout.dtype = static_cast<DType>(dtype);
    l.block_format = Bytes();
    return l;
  }
  // OK when every read succeeded and nothing is left over.
  absl::Status Done(std::string_view what) const {
    if (ok_ && in_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(StrCat("malformed ", what));
  }

 private:
  template <typename T>
  T Int() {
    if (!ok_ || in_.size() < sizeof(T)) {
      ok_ = false;
      return 0;
    }
    T v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) {
      v |= static_cast<T>(static_cast<T>(static_cast<uint8_t>(in_[i])) << (8 * i));
    }
    in_.remove_prefix(sizeof(T));
    return v;
  }
  std::string_view in_;
  bool ok_ = true;
};

// Checks the type byte and returns a reader positioned after it.
absl::StatusOr<Reader> Open(std::string_view payload, MessageType expected) {
  if (payload.empty() || static_cast<uint8_t>(payload[0]) != static_cast<uint8_t>(expected)) {
    return absl::InvalidArgumentError("kv transfer message of an unexpected type");
  }
  return Reader(payload.substr(1));
}

}  // namespace

std::string EncodeEndpointAddress(const EndpointAddress& a) {
  Writer w;
  w.U32(kAddressMagic).U64(a.epoch).U64(a.remote_base).I64(a.num_blocks).I64(a.bytes_per_block);
  w.Bytes(a.worker_address).Bytes(a.rkey);
  return StrCat(kAddressPrefix, absl::WebSafeBase64Escape(w.Take()));
}

absl::StatusOr<EndpointAddress> DecodeEndpointAddress(std::string_view text) {
  if (text.substr(0, kAddressPrefix.size()) != kAddressPrefix) {
    return absl::InvalidArgumentError("not a UCX KV endpoint address (no ucx1: prefix)");
  }
  text.remove_prefix(kAddressPrefix.size());
  std::string binary;
  if (!absl::WebSafeBase64Unescape(absl::string_view(text.data(), text.size()), &binary)) {
    return absl::InvalidArgumentError("UCX KV endpoint address: bad base64");
  }
  Reader r(binary);
  EndpointAddress a;
  const uint32_t magic = r.U32();
  a.epoch = r.U64();
  a.remote_base = r.U64();
  a.num_blocks = r.I64();
  a.bytes_per_block = r.I64();
  a.worker_address = r.Bytes();
  a.rkey = r.Bytes();
  if (absl::Status s = r.Done("UCX KV endpoint address"); !s.ok()) return s;
  if (magic != kAddressMagic || a.num_blocks <= 0 || a.bytes_per_block <= 0 ||
      a.worker_address.empty() || a.rkey.empty()) {
    return absl::InvalidArgumentError("UCX KV endpoint address: inconsistent fields");
  }
  return a;
}

std::string Encode(const Hello& m) {
  return Writer(MessageType::kHello)
      .U64(m.sender_epoch)
      .U64(m.conn_id)
      .Bytes(m.sender_worker_id)
      .Bytes(m.sender_address)
      .U64(m.expected_epoch)
      .Layout(m.layout)
      .Take();
}

std::string Encode(const Ack& m) {
  return Writer(m.type).U64(m.conn_id).U64(m.transfer_id).Status(m.status).Take();
}

std::string Encode(const Begin& m) {
  Writer w(MessageType::kBegin);
  w.U64(m.sender_epoch).U64(m.conn_id).U64(m.transfer_id).Bytes(m.lease_id).I32(m.num_blocks);
  w.I64(m.remaining_ms).U8(static_cast<uint8_t>(m.data_path)).U32(static_cast<uint32_t>(m.blocks.size()));
  for (int32_t b : m.blocks) w.I32(b);
  return w.Take();
}

std::string Encode(const BlockHeader& m) {
  return Writer().U64(m.sender_epoch).U64(m.conn_id).U64(m.transfer_id).I32(m.index).Take();
}

absl::StatusOr<BlockHeader> DecodeBlockHeader(std::string_view header) {
  Reader r(header);
  BlockHeader m;
  m.sender_epoch = r.U64();
  m.conn_id = r.U64();
  m.transfer_id = r.U64();
  m.index = r.I32();
  if (absl::Status s = r.Done("block header"); !s.ok()) return s;
  return m;
}

std::string Encode(const End& m) {
  return Writer(MessageType::kEnd)
      .U64(m.sender_epoch)
      .U64(m.conn_id)
      .U64(m.transfer_id)
      .Status(m.status)
      .I64(m.blocks_sent)
      .Take();
}

std::string Encode(const Bye& m) {
  return Writer(MessageType::kBye).U64(m.sender_epoch).U64(m.conn_id).Take();
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
  m.sender_epoch = r->U64();
  m.conn_id = r->U64();
  m.sender_worker_id = r->Bytes();
  m.sender_address = r->Bytes();
  m.expected_epoch = r->U64();
  m.layout = r->Layout();
  if (absl::Status s = r->Done("hello"); !s.ok()) return s;
  if (m.sender_address.empty()) return absl::InvalidArgumentError("hello without an address");
  return m;
}

absl::StatusOr<Ack> DecodeAck(std::string_view payload) {
  auto type = PeekType(payload);
  if (!type.ok()) return type.status();
  if (*type != MessageType::kHelloAck && *type != MessageType::kBeginAck &&
      *type != MessageType::kEndAck) {
    return absl::InvalidArgumentError("not an acknowledgement");
  }
  Reader r(payload.substr(1));
  Ack m;
  m.type = *type;
  m.conn_id = r.U64();
  m.transfer_id = r.U64();
  m.status = r.Status();
  if (absl::Status s = r.Done("acknowledgement"); !s.ok()) return s;
  return m;
}

absl::StatusOr<Begin> DecodeBegin(std::string_view payload) {
  auto r = Open(payload, MessageType::kBegin);
  if (!r.ok()) return r.status();
  Begin m;
  m.sender_epoch = r->U64();
  m.conn_id = r->U64();
  m.transfer_id = r->U64();
  m.lease_id = r->Bytes();
  m.num_blocks = r->I32();
  m.remaining_ms = r->I64();
  const uint8_t path = r->U8();
  const uint32_t count = r->U32();
  if (count > kMaxField / 4) return absl::InvalidArgumentError("begin with too many blocks");
  for (uint32_t i = 0; i < count; ++i) m.blocks.push_back(r->I32());
  if (absl::Status s = r->Done("begin"); !s.ok()) return s;
  if (m.num_blocks < 0) return absl::InvalidArgumentError("begin with a negative block count");
  if (path > static_cast<uint8_t>(DataPath::kRmaPut)) {
    return absl::InvalidArgumentError("begin with an unknown data path");
  }
  m.data_path = static_cast<DataPath>(path);
  if (m.data_path == DataPath::kActiveMessage && m.blocks.size() != static_cast<size_t>(m.num_blocks)) {
    return absl::InvalidArgumentError("begin whose block list does not match its block count");
  }
  return m;
}

absl::StatusOr<End> DecodeEnd(std::string_view payload) {
  auto r = Open(payload, MessageType::kEnd);
  if (!r.ok()) return r.status();
  End m;
  m.sender_epoch = r->U64();
  m.conn_id = r->U64();
  m.transfer_id = r->U64();
  m.status = r->Status();
  m.blocks_sent = r->I64();
  if (absl::Status s = r->Done("end"); !s.ok()) return s;
  return m;
}

absl::StatusOr<Bye> DecodeBye(std::string_view payload) {
  auto r = Open(payload, MessageType::kBye);
  if (!r.ok()) return r.status();
  Bye m;
  m.sender_epoch = r->U64();
  m.conn_id = r->U64();
  if (absl::Status s = r->Done("bye"); !s.ok()) return s;
  return m;
}

}  // namespace tandem::transfer::wire
