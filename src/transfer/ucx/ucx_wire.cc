#include "transfer/ucx/ucx_wire.h"

#include "absl/strings/escaping.h"
#include "common/strings.h"
#include "transfer/protocol/byte_codec.h"

namespace tandem::transfer::ucx {
namespace {

using wire::ByteFormat;
using wire::ByteReader;
using wire::ByteWriter;

constexpr std::string_view kAddressPrefix = "ucx1:";
constexpr uint32_t kAddressMagic = 0x544b5631;  // "TKV1"
constexpr size_t kMaxField = 1 << 20;           // no field of ours comes near 1 MiB
constexpr uint8_t kToAcceptor = 1;
constexpr uint8_t kToConnector = 2;

constexpr ByteFormat kFormat{.word_bytes = 4, .max_field_bytes = kMaxField};

// OK when every read succeeded and nothing is left over.
absl::Status Done(const ByteReader& r, std::string_view what) {
  if (r.ok() && r.AtEnd()) return absl::OkStatus();
  return absl::InvalidArgumentError(StrCat("malformed ", what));
}

}  // namespace

std::string EncodeEndpointAddress(const EndpointAddress& a) {
  ByteWriter w(kFormat);
  w.U32(kAddressMagic).Put(a.epoch, a.remote_base, a.num_blocks, a.bytes_per_block,
                          a.worker_address, a.rkey);
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
  ByteReader r(binary, kFormat);
  EndpointAddress a;
  const uint32_t magic = r.U32();
  r.Get(a.epoch, a.remote_base, a.num_blocks, a.bytes_per_block, a.worker_address, a.rkey);
  if (absl::Status s = Done(r, "UCX KV endpoint address"); !s.ok()) return s;
  if (magic != kAddressMagic || a.num_blocks <= 0 || a.bytes_per_block <= 0 ||
      a.worker_address.empty() || a.rkey.empty()) {
    return absl::InvalidArgumentError("UCX KV endpoint address: inconsistent fields");
  }
  return a;
}

std::string EncodeRouted(const Route& route, std::string_view message) {
  ByteWriter w(kFormat);
  if (route.to_acceptor) {
    w.U8(kToAcceptor).U64(route.origin).U64(route.conn).Bytes(route.reply_address);
  } else {
    w.U8(kToConnector).U64(route.conn);
  }
  std::string frame = w.Take();
  frame.append(message);
  return frame;
}

absl::StatusOr<Routed> DecodeRouted(std::string_view frame) {
  if (frame.empty()) return absl::InvalidArgumentError("empty UCX control message");
  ByteReader r(frame.substr(1), kFormat);
  Routed out;
  const uint8_t kind = static_cast<uint8_t>(frame[0]);
  if (kind == kToAcceptor) {
    out.route.origin = r.U64();
    out.route.conn = r.U64();
    out.route.reply_address = r.Bytes();
  } else if (kind == kToConnector) {
    out.route.to_acceptor = false;
    out.route.conn = r.U64();
  } else {
    return absl::InvalidArgumentError(StrCat("UCX control message of unknown kind ", kind));
  }
  if (!r.ok()) return absl::InvalidArgumentError("malformed UCX control message route");
  out.message = frame.substr(frame.size() - r.remaining());
  return out;
}

std::string EncodeDataHeader(const DataHeader& h) {
  return ByteWriter(kFormat).U64(h.origin).U64(h.conn).Take() + wire::Encode(h.block);
}

absl::StatusOr<DataHeader> DecodeDataHeader(std::string_view header) {
  ByteReader r(header, kFormat);
  DataHeader h;
  h.origin = r.U64();
  h.conn = r.U64();
  if (!r.ok()) return absl::InvalidArgumentError("malformed UCX block header");
  absl::StatusOr<wire::BlockHeader> block = wire::DecodeBlockHeader(header.substr(16));
  if (!block.ok()) return block.status();
  h.block = *block;
  return h;
}

}  // namespace tandem::transfer::ucx
