// The little-endian binary codec of the KV hand-off protocol's messages (protocol/wire.h) and of
// the media's endpoint addresses. A format fixes the width of its "words" (length prefixes, status
// codes and layout fields) and the largest length prefix a reader accepts; everything else is
// fixed-width.
// Readers never crash on malformed input: the first failure sticks, later reads return zero, and
// ok() turns false.
// Thread-safety: plain values; a writer or reader is used by one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "tandem/kv_transport.h"

namespace tandem::transfer::wire {

struct ByteFormat {
  size_t word_bytes = 4;                  // 4 or 8
  uint64_t max_field_bytes = UINT64_MAX;  // longest length-prefixed field a reader accepts
};

class ByteWriter {
 public:
  explicit ByteWriter(const ByteFormat& format) : word_bytes_(format.word_bytes) {}
  ByteWriter& U8(uint8_t v) { return Fixed(v, 1); }
  ByteWriter& U32(uint32_t v) { return Fixed(v, 4); }
  ByteWriter& U64(uint64_t v) { return Fixed(v, 8); }
  ByteWriter& I32(int32_t v) { return U32(static_cast<uint32_t>(v)); }
  ByteWriter& I64(int64_t v) { return U64(static_cast<uint64_t>(v)); }
  // An int32 stored in a word (sign-extended when words are 8 bytes).
  ByteWriter& Int32Word(int32_t v);
  // Word-sized length, then the bytes.
  ByteWriter& Bytes(std::string_view s);
  // Word-sized code, then the message as Bytes.
  ByteWriter& Status(const absl::Status& s);
  ByteWriter& Layout(const KvLayoutInfo& l);
  // Each value by its type: 64-bit integers fixed, int32_t as a word, strings as Bytes.
  template <typename... T>
  ByteWriter& Put(const T&... values) {
    (PutOne(values), ...);
    return *this;
  }
  std::string Take() { return std::move(out_); }

 private:
  void PutOne(uint64_t v) { U64(v); }
  void PutOne(int64_t v) { I64(v); }
  void PutOne(int32_t v) { Int32Word(v); }
  void PutOne(const std::string& v) { Bytes(v); }
  ByteWriter& Fixed(uint64_t v, size_t n);
  size_t word_bytes_;
  std::string out_;
};

// Reads what ByteWriter wrote with the same format.
class ByteReader {
 public:
  ByteReader(std::string_view in, const ByteFormat& format) : in_(in), format_(format) {}
  bool ok() const { return ok_; }
  bool AtEnd() const { return in_.empty(); }
  size_t remaining() const { return in_.size(); }  // bytes not read yet
  uint8_t U8() { return static_cast<uint8_t>(Fixed(1)); }
  uint32_t U32() { return static_cast<uint32_t>(Fixed(4)); }
  uint64_t U64() { return Fixed(8); }
  int32_t I32() { return static_cast<int32_t>(U32()); }
  int64_t I64() { return static_cast<int64_t>(U64()); }
  // Fails on a value outside int32's range when words are 8 bytes.
  int32_t Int32Word();
  std::string Bytes();
  // A code past kUnauthenticated fails the read; a failed read returns OK.
  absl::Status Status();
  // A dtype past kBF16 fails the read.
  KvLayoutInfo Layout();
  // Reads what ByteWriter::Put wrote, into values of the same types.
  template <typename... T>
  void Get(T&... values) {
    (GetOne(values), ...);
  }

 private:
  void GetOne(uint64_t& v) { v = U64(); }
  void GetOne(int64_t& v) { v = I64(); }
  void GetOne(int32_t& v) { v = Int32Word(); }
  void GetOne(std::string& v) { v = Bytes(); }
  uint64_t Fixed(size_t n);
  std::string_view in_;
  ByteFormat format_;
  bool ok_ = true;
};

}  // namespace tandem::transfer::wire
