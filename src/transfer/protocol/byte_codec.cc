#include "transfer/protocol/byte_codec.h"

#include "common/strings.h"

namespace tandem::transfer::wire {

ByteWriter& ByteWriter::Fixed(uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return *this;
}

ByteWriter& ByteWriter::Int32Word(int32_t v) {
  return Fixed(static_cast<uint64_t>(static_cast<int64_t>(v)), word_bytes_);
}

ByteWriter& ByteWriter::Bytes(std::string_view s) {
  Fixed(s.size(), word_bytes_);
  out_.append(s);
  return *this;
}

ByteWriter& ByteWriter::Status(const absl::Status& s) {
  Fixed(static_cast<uint64_t>(s.code()), word_bytes_);
  return Bytes(ToStd(s.message()));
}

ByteWriter& ByteWriter::Layout(const KvLayoutInfo& l) {
  Bytes(l.model_id);
  Int32Word(l.layout.num_layers).Int32Word(l.layout.num_kv_heads).Int32Word(l.layout.head_dim);
  Int32Word(l.layout.block_size).U8(static_cast<uint8_t>(l.layout.dtype));
  return Bytes(l.block_format);
}

uint64_t ByteReader::Fixed(size_t n) {
  if (!ok_ || in_.size() < n) {
    ok_ = false;
    return 0;
  }
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) {
    v |= static_cast<uint64_t>(static_cast<uint8_t>(in_[i])) << (8 * i);
  }
  in_.remove_prefix(n);
  return v;
}

int32_t ByteReader::Int32Word() {
  if (format_.word_bytes == 4) return I32();
  const int64_t v = static_cast<int64_t>(Fixed(format_.word_bytes));
  if (v < INT32_MIN || v > INT32_MAX) ok_ = false;
  return static_cast<int32_t>(v);
}

std::string ByteReader::Bytes() {
  const uint64_t n = Fixed(format_.word_bytes);
  if (!ok_ || n > format_.max_field_bytes || n > in_.size()) {
    ok_ = false;
    return {};
  }
  std::string s(in_.substr(0, n));
  in_.remove_prefix(n);
  return s;
}

absl::Status ByteReader::Status() {
  const uint64_t code = Fixed(format_.word_bytes);
  std::string message = Bytes();
  if (code > static_cast<uint64_t>(absl::StatusCode::kUnauthenticated)) ok_ = false;
  if (!ok_) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}

KvLayoutInfo ByteReader::Layout() {
  KvLayoutInfo l;
  l.model_id = Bytes();
  l.layout.num_layers = Int32Word();
  l.layout.num_kv_heads = Int32Word();
  l.layout.head_dim = Int32Word();
  l.layout.block_size = Int32Word();
  const uint8_t dtype = U8();
  if (dtype > static_cast<uint8_t>(DType::kBF16)) ok_ = false;
  l.layout.dtype = static_cast<DType>(dtype);
  l.block_format = Bytes();
  return l;
}

}  // namespace tandem::transfer::wire
