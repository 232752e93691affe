// GgufFile on corrupt and truncated input: every problem is an error naming what is wrong,
// never a crash, a huge allocation or a read outside the bytes (run under ASan/UBSan too).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "gguf_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::gguf {
namespace {

using ::tandem::gguf::testing::GgufBytes;
using ::tandem::gguf::testing::ParseCopy;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr uint32_t kF32 = 0, kQ4_0 = 2, kQ8_0 = 8;

// A small valid file with every kind of structure: scalars, strings, arrays of numbers and of
// strings, a custom alignment and three tensors (the last one ends exactly at the end of file).
std::vector<uint8_t> SmallValidFile() {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetUint32("llama.block_count", 2);
  w.SetFloat32("llama.rope.freq_base", 10000.0f);
  w.SetBool("flag", true);
  w.SetStringArray("tokenizer.ggml.tokens", {"a", "bc", ""});
  w.SetInt32Array("tokenizer.ggml.token_type", {1, 2, 3});
  w.SetFloat32Array("tokenizer.ggml.scores", {0.5f, -1.0f});
  w.set_alignment(16);
  w.AddTensor("w.f32", {3}, GgmlType::kF32, std::vector<uint8_t>(12, 0x3f));
  w.AddTensor("w.q8", {32, 1}, GgmlType::kQ8_0, std::vector<uint8_t>(34, 1));
  w.AddTensor("w.last", {4}, GgmlType::kF32, std::vector<uint8_t>(16, 2));
  return w.Serialize();
}

// Parses `bytes` and expects failure with `code` and a message holding every piece of `parts`.
void ExpectError(const std::vector<uint8_t>& bytes, absl::StatusCode code,
                 const std::vector<std::string>& parts) {
  auto parsed = ParseCopy(bytes, "bad.gguf");
  ASSERT_FALSE(parsed.file.ok()) << "parsed a corrupt file";
  EXPECT_EQ(parsed.file.status().code(), code) << parsed.file.status();
  const std::string msg(parsed.file.status().message());
  EXPECT_THAT(msg, HasSubstr("bad.gguf"));
  for (const auto& p : parts) EXPECT_THAT(msg, HasSubstr(p));
}

void ExpectDataLoss(const GgufBytes& b, const std::vector<std::string>& parts) {
  ExpectError(b.bytes(), absl::StatusCode::kDataLoss, parts);
}

// A file with one F32 tensor described by the given info fields, with enough data after it.
GgufBytes OneTensor(const std::vector<uint64_t>& dims, uint32_t type, uint64_t offset,
                    size_t data_bytes = 64) {
  GgufBytes b;
  b.Header(3, 1, 0).TensorInfo("blk.0.weight", dims, type, offset).PadTo(32).Zeros(data_bytes);
  return b;
}

TEST(GgufCorruptTest, SmallValidFileParses) {
  auto parsed = ParseCopy(SmallValidFile());
  ASSERT_TRUE(parsed.file.ok()) << parsed.file.status();
  EXPECT_EQ((*parsed.file)->tensors().size(), 3u);
}

TEST(GgufCorruptTest, EveryTruncationFails) {
  const auto full = SmallValidFile();
  auto whole = ParseCopy(full);
  ASSERT_TRUE(whole.file.ok());
  const TensorInfo* last = (*whole.file)->FindTensor("w.last");
  ASSERT_NE(last, nullptr);
  const size_t needed = static_cast<size_t>(last->data - (*whole.file)->file_data()) + 16;
  ASSERT_EQ(needed, full.size()) << "the last tensor should end the file";
  const size_t data_start =
      static_cast<size_t>((*whole.file)->FindTensor("w.f32")->data - (*whole.file)->file_data());
  for (size_t len = 0; len < full.size(); ++len) {
    auto parsed = ParseCopy(full.data(), len, "cut.gguf");
    ASSERT_FALSE(parsed.file.ok())
        << "prefix of " << len << " of " << full.size() << " bytes parsed";
    EXPECT_EQ(parsed.file.status().code(), absl::StatusCode::kDataLoss) << len;
    const std::string msg(parsed.file.status().message());
    EXPECT_THAT(msg, HasSubstr("cut.gguf")) << len;
    if (len >= data_start) {
      // Header intact, data cut: the error says so and names the first tensor cut off.
      EXPECT_THAT(msg, HasSubstr("truncated")) << len;
      EXPECT_THAT(msg, HasSubstr(len < data_start + 12        ? "w.f32"
                                 : len < data_start + 16 + 34 ? "w.q8"
                                                              : "w.last"))
          << len << ": " << msg;
    }
  }
}

TEST(GgufCorruptTest, TruncatedFixedFieldsSayTruncated) {
  ExpectDataLoss(GgufBytes().U32(0x46554747).U32(3).U32(0), {"truncated", "tensor count"});
  ExpectDataLoss(GgufBytes().U32(0x46554747).U32(3).U64(0), {"truncated", "metadata count"});
  ExpectDataLoss(GgufBytes().U8('G'), {"truncated", "magic"});
  // The value type of key "my.key" is cut after two of its four bytes.
  ExpectDataLoss(GgufBytes().Header(3, 0, 1).Str("my.key").Put<uint16_t>(4),
                 {"truncated", "my.key", "needs 4 bytes"});
}

TEST(GgufCorruptTest, BadMagic) {
  auto bytes = SmallValidFile();
  bytes[3] = 'L';  // "GGUL"
  ExpectError(bytes, absl::StatusCode::kInvalidArgument, {"not a GGUF file"});
  ExpectError(std::vector<uint8_t>{'G', 'G', 'M', 'L', 0, 0, 0, 0},
              absl::StatusCode::kInvalidArgument, {"bad magic"});
  // Big-endian magic is not GGUF little-endian either.
  ExpectError(GgufBytes().U32(0x47475546).U32(3).U64(0).U64(0).bytes(),
              absl::StatusCode::kInvalidArgument, {"bad magic"});
}

TEST(GgufCorruptTest, UnsupportedVersions) {
  for (uint32_t version : {0u, 1u, 4u, 0xFFFFFFFFu, 0x03000000u}) {
    GgufBytes b;
    b.Header(version, 0, 0);
    ExpectError(b.bytes(), absl::StatusCode::kInvalidArgument,
                {"version " + std::to_string(version), "not supported"});
  }
}

TEST(GgufCorruptTest, AbsurdCounts) {
  ExpectDataLoss(GgufBytes().Header(3, 1ull << 60, 0), {"tensor count 1152921504606846976"});
  ExpectDataLoss(GgufBytes().Header(3, 0, 1ull << 60), {"metadata count 1152921504606846976"});
  ExpectDataLoss(GgufBytes().Header(3, ~0ull, ~0ull), {"impossible"});
  // Plausible for the bytes present but more than there are entries.
  ExpectDataLoss(GgufBytes().Header(3, 0, 2).KvString("a", std::string(30, 'x')).Zeros(4),
                 {"truncated", "metadata key"});
}

TEST(GgufCorruptTest, AbsurdStringLengths) {
  // Key, string value, string array element and tensor name each claiming 2^63 bytes.
  ExpectDataLoss(GgufBytes().Header(3, 0, 1).U64(1ull << 63).Zeros(16),
                 {"metadata key", "9223372036854775808"});
  ExpectDataLoss(
      GgufBytes().Header(3, 0, 1).Key("general.name", ValueType::kString).U64(1ull << 63).Zeros(8),
      {"general.name", "claims 9223372036854775808 bytes"});
  ExpectDataLoss(GgufBytes()
                     .Header(3, 0, 1)
                     .Key("tokens", ValueType::kArray)
                     .U32(8)
                     .U64(2)
                     .Str("ok")
                     .U64(~0ull)
                     .Zeros(8),
                 {"tokens", "claims"});
  ExpectDataLoss(GgufBytes().Header(3, 1, 0).U64(1ull << 63).Zeros(40), {"tensor name"});
  // A string one byte longer than what is left.
  GgufBytes b;
  b.Header(3, 0, 1).Key("s", ValueType::kString).U64(4).Raw({'a', 'b', 'c'});
  ExpectDataLoss(b, {"claims 4 bytes but only 3 remain"});
}

TEST(GgufCorruptTest, AbsurdArrayCounts) {
  // 2^62 elements: count * element size overflows 64 bits for 4- and 8-byte elements.
  for (ValueType elem :
       {ValueType::kUint8, ValueType::kUint32, ValueType::kFloat32, ValueType::kUint64,
        ValueType::kFloat64, ValueType::kString, ValueType::kArray}) {
    GgufBytes b;
    b.Header(3, 0, 1)
        .Key("arr", ValueType::kArray)
        .U32(static_cast<uint32_t>(elem))
        .U64(1ull << 62);
    b.Zeros(64);
    ExpectDataLoss(b, {"arr", "4611686018427387904", "does not fit"});
  }
  // One element more than the bytes hold.
  GgufBytes b;
  b.Header(3, 0, 1).Key("arr", ValueType::kArray).U32(static_cast<uint32_t>(ValueType::kUint32));
  b.U64(3).U32(1).U32(2).Zeros(3);
  ExpectDataLoss(b, {"arr", "does not fit"});
}

TEST(GgufCorruptTest, UnknownValueTypes) {
  ExpectDataLoss(GgufBytes().Header(3, 0, 1).Key("k", static_cast<ValueType>(13)).U64(0),
                 {"k", "unknown value type 13"});
  ExpectDataLoss(GgufBytes().Header(3, 0, 1).Key("k", static_cast<ValueType>(0xFFFFFFFF)).U64(0),
                 {"unknown value type"});
  ExpectDataLoss(GgufBytes().Header(3, 0, 1).Key("k", ValueType::kArray).U32(13).U64(1).U64(0),
                 {"k", "unknown array element type 13"});
}

TEST(GgufCorruptTest, BoolOutOfRange) {
  ExpectDataLoss(GgufBytes().Header(3, 0, 1).Key("flag", ValueType::kBool).U8(2),
                 {"flag", "bool value 2"});
}

TEST(GgufCorruptTest, BadKeys) {
  ExpectDataLoss(GgufBytes().Header(3, 0, 1).KvU32("", 1), {"key length"});
  ExpectDataLoss(GgufBytes().Header(3, 0, 1).KvU32(std::string(1025, 'k'), 1), {"key length"});
  ExpectDataLoss(GgufBytes().Header(3, 0, 2).KvU32("dup", 1).KvString("dup", "x"),
                 {"duplicate metadata key dup"});
}

TEST(GgufCorruptTest, NestedArrays) {
  // `levels` arrays inside each other, the innermost holding one u8.
  auto nested = [](int levels) {
    GgufBytes b;
    b.Header(3, 0, 1).Key("deep", ValueType::kArray);
    for (int l = 1; l < levels; ++l) b.U32(static_cast<uint32_t>(ValueType::kArray)).U64(1);
    b.U32(static_cast<uint32_t>(ValueType::kUint8)).U64(1).U8(7);
    return b;
  };
  for (int levels = 1; levels <= 4; ++levels) {
    auto parsed = ParseCopy(nested(levels).bytes());
    EXPECT_TRUE(parsed.file.ok()) << levels << " levels: " << parsed.file.status();
  }
  ExpectDataLoss(nested(5), {"deep", "nested too deeply"});
  ExpectDataLoss(nested(1000), {"deep", "nested too deeply"});
}

TEST(GgufCorruptTest, BadDimensionCounts) {
  ExpectDataLoss(OneTensor({}, kF32, 0), {"blk.0.weight", "0 dimensions"});
  ExpectDataLoss(OneTensor({1, 1, 1, 1, 1}, kF32, 0), {"blk.0.weight", "5 dimensions"});
  GgufBytes b;
  b.Header(3, 1, 0).Str("t").U32(0xFFFFFFFF).Zeros(64);
  ExpectDataLoss(b, {"4294967295 dimensions"});
}

TEST(GgufCorruptTest, BadDimensions) {
  ExpectDataLoss(OneTensor({0}, kF32, 0), {"blk.0.weight", "invalid dimension 0"});
  ExpectDataLoss(OneTensor({4, 0}, kF32, 0), {"blk.0.weight", "invalid dimension 0"});
  // Products that overflow int64 (and uint64) or are absurdly large.
  ExpectDataLoss(OneTensor({1ull << 32, 1ull << 32}, kF32, 0),
                 {"blk.0.weight", "invalid dimension"});
  ExpectDataLoss(OneTensor({1ull << 20, 1ull << 20, 1ull << 20}, kF32, 0), {"invalid dimension"});
  ExpectDataLoss(OneTensor({3, 1ull << 62}, kF32, 0), {"invalid dimension"});
  ExpectDataLoss(OneTensor({~0ull}, kF32, 0), {"invalid dimension"});
  ExpectDataLoss(OneTensor({(1ull << 40) + 1}, kF32, 0), {"invalid dimension"});
  // Large but representable: caught by the size check instead.
  ExpectDataLoss(OneTensor({1ull << 25, 1ull << 25}, kF32, 0), {"truncated", "blk.0.weight"});
}

TEST(GgufCorruptTest, UnknownTensorType) {
  for (uint32_t type : {4u, 5u, 16u, 29u, 31u, 1000u, 0xFFFFFFFFu}) {
    ExpectDataLoss(OneTensor({32}, type, 0),
                   {"blk.0.weight", "unknown type id " + std::to_string(type)});
  }
}

TEST(GgufCorruptTest, RowNotAMultipleOfTheBlock) {
  ExpectDataLoss(OneTensor({33, 2}, kQ4_0, 0), {"blk.0.weight", "33", "Q4_0 block size 32"});
  ExpectDataLoss(OneTensor({128}, 12, 0), {"blk.0.weight", "Q4_K block size 256"});
  // The row is dims[0]: a multiple spread over the other dimensions does not count.
  ExpectDataLoss(OneTensor({16, 2}, kQ8_0, 0), {"Q8_0"});
}

TEST(GgufCorruptTest, MisalignedOffset) {
  ExpectDataLoss(OneTensor({1}, kF32, 4), {"blk.0.weight", "offset 4", "aligned to 32"});
  GgufBytes b;
  b.Header(3, 1, 1)
      .KvU32("general.alignment", 64)
      .TensorInfo("x", {1}, kF32, 32)
      .PadTo(64)
      .Zeros(128);
  ExpectDataLoss(b, {"x", "offset 32", "aligned to 64"});
}

TEST(GgufCorruptTest, TensorDataPastTheEnd) {
  // 16 floats need 64 bytes; 60 are there.
  ExpectDataLoss(OneTensor({16}, kF32, 0, 60), {"truncated", "blk.0.weight", "needs bytes"});
  // Exactly enough bytes is fine.
  auto exact = ParseCopy(OneTensor({16}, kF32, 0, 64).bytes());
  EXPECT_TRUE(exact.file.ok()) << exact.file.status();
}

TEST(GgufCorruptTest, TensorOffsetsPastTheEnd) {
  ExpectDataLoss(OneTensor({1}, kF32, 64, 64), {"truncated", "blk.0.weight"});
  // Offsets near 2^64: data start + offset must not wrap around to a valid address.
  ExpectDataLoss(OneTensor({1}, kF32, 0xFFFFFFFFFFFFFFE0ull), {"truncated", "blk.0.weight"});
  ExpectDataLoss(OneTensor({8}, kF32, 1ull << 63), {"truncated", "blk.0.weight"});
  // No tensor data at all after the header padding.
  GgufBytes b;
  b.Header(3, 1, 0).TensorInfo("t", {1}, kF32, 0);
  ExpectDataLoss(b, {"truncated", "t"});
}

TEST(GgufCorruptTest, DuplicateTensors) {
  GgufBytes b;
  b.Header(3, 2, 0)
      .TensorInfo("w", {1}, kF32, 0)
      .TensorInfo("w", {1}, kF32, 32)
      .PadTo(32)
      .Zeros(64);
  ExpectDataLoss(b, {"duplicate tensor w"});
}

TEST(GgufCorruptTest, BadTensorNames) {
  GgufBytes empty;
  empty.Header(3, 1, 0).TensorInfo("", {1}, kF32, 0).PadTo(32).Zeros(32);
  ExpectDataLoss(empty, {"tensor name"});
  GgufBytes long_name;
  long_name.Header(3, 1, 0).TensorInfo(std::string(1025, 'n'), {1}, kF32, 0).PadTo(32).Zeros(32);
  ExpectDataLoss(long_name, {"tensor name"});
}

TEST(GgufCorruptTest, AlignmentMustBeAPowerOfTwo) {
  for (uint32_t a : {0u, 3u, 48u, 100u, 1u << 21, 0xFFFFFFFFu}) {
    GgufBytes b;
    b.Header(3, 0, 1).KvU32("general.alignment", a);
    ExpectDataLoss(b, {"general.alignment", "power of two"});
  }
  GgufBytes negative;
  negative.Header(3, 0, 1).Key("general.alignment", ValueType::kInt32).Put<int32_t>(-32);
  ExpectDataLoss(negative, {"general.alignment"});
  GgufBytes huge_signed;  // INT64_MIN is 2^63 as unsigned: a power of two, but absurd
  huge_signed.Header(3, 0, 1).Key("general.alignment", ValueType::kInt64).U64(1ull << 63);
  ExpectDataLoss(huge_signed, {"general.alignment"});
  GgufBytes as_string;
  as_string.Header(3, 0, 1).KvString("general.alignment", "32");
  ExpectDataLoss(as_string, {"general.alignment"});
  GgufBytes as_float;
  as_float.Header(3, 0, 1).Key("general.alignment", ValueType::kFloat32).Put<float>(32.0f);
  ExpectDataLoss(as_float, {"general.alignment"});
}

// Uses everything a successful parse hands out, so that ASan sees any view that points
// outside the bytes.
void TouchEverything(const GgufFile& f) {
  const uint8_t* begin = f.file_data();
  const uint8_t* end = begin + f.file_size();
  for (const auto& key : f.keys()) {
    const Value* v = f.Find(key);
    ASSERT_NE(v, nullptr);
    (void)GgufFile::Describe(*v, 1000);
    (void)f.GetUint(key);
    (void)f.GetInt(key);
    (void)f.GetFloat(key);
    (void)f.GetBool(key);
    (void)f.GetString(key);
    (void)f.GetStringArray(key);
    (void)f.GetIntArray(key);
    (void)f.GetFloatArray(key);
    if (v->type == ValueType::kString) {
      ASSERT_TRUE(v->s.empty() ||
                  (reinterpret_cast<const uint8_t*>(v->s.data()) >= begin &&
                   reinterpret_cast<const uint8_t*>(v->s.data() + v->s.size()) <= end));
    }
  }
  for (const auto& t : f.tensors()) {
    ASSERT_GT(t.num_bytes, 0);
    ASSERT_GE(t.data, begin);
    ASSERT_LE(t.data + t.num_bytes, end);
    volatile uint8_t sink = t.data[0] ^ t.data[t.num_bytes - 1];
    (void)sink;
    ASSERT_EQ(f.FindTensor(t.name), &t);
  }
}

TEST(GgufCorruptTest, RandomMutationsNeverCrash) {
  const auto original = SmallValidFile();
  std::mt19937_64 rng(0x9E3779B97F4A7C15ull);
  // Most mutations go to the header (metadata and tensor infos): the tensor bytes themselves
  // cannot make a file invalid.
  auto whole = ParseCopy(original);
  ASSERT_TRUE(whole.file.ok());
  const size_t header_end =
      static_cast<size_t>((*whole.file)->tensors()[0].data - (*whole.file)->file_data());
  const uint8_t interesting[] = {0x00, 0x01, 0x02, 0x04, 0x08, 0x09, 0x0c, 0x0d,
                                 0x10, 0x20, 0x3f, 0x40, 0x7f, 0x80, 0xfe, 0xff};
  int ok = 0, failed = 0;
  for (int iter = 0; iter < 5000; ++iter) {
    std::vector<uint8_t> bytes = original;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t limit = rng() % 8 == 0 ? bytes.size() : header_end;
      const size_t at = rng() % limit;
      switch (rng() % 3) {
        case 0: bytes[at] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
        case 1: bytes[at] = static_cast<uint8_t>(rng()); break;
        default: bytes[at] = interesting[rng() % sizeof interesting]; break;
      }
    }
    if (rng() % 16 == 0) bytes.resize(rng() % bytes.size());
    auto parsed = ParseCopy(bytes, "mutant.gguf");
    if (parsed.file.ok()) {
      ++ok;
      TouchEverything(**parsed.file);
      if (::testing::Test::HasFatalFailure()) FAIL() << "iteration " << iter;
    } else {
      ++failed;
      ASSERT_NE(parsed.file.status().code(), absl::StatusCode::kOk);
      ASSERT_THAT(std::string(parsed.file.status().message()), HasSubstr("mutant.gguf")) << iter;
    }
  }
  // Both outcomes occur: the mutations do reach the structure, and benign ones still parse.
  EXPECT_GT(ok, 100);
  EXPECT_GT(failed, 1000);
}

// Counts are checked against the bytes left, but a large file leaves room for huge counts: a
// corrupt count in a multi-GB model must still be an error, not std::bad_alloc from reserving
// memory for entries that are not there. A sparse 256 GiB file stands in for a big model (it
// takes no disk space; reserving for its counts would need hundreds of GB).
class SparseBigFile : public ::testing::Test {
 protected:
  static constexpr uint64_t kSize = uint64_t{256} << 30;

  // Writes `head` at the start of a sparse file of kSize bytes; false if the file system
  // cannot hold such a file.
  bool Make(const std::vector<uint8_t>& head) {
    path_ = dir_.File("big.gguf");
    FILE* f = std::fopen(path_.c_str(), "wb");
    if (f == nullptr) return false;
    const bool ok = std::fwrite(head.data(), 1, head.size(), f) == head.size() &&
                    ::ftruncate(::fileno(f), static_cast<off_t>(kSize)) == 0;
    std::fclose(f);
    return ok;
  }

  ::tandem::gguf::testing::TempDir dir_;
  std::string path_;
};

TEST_F(SparseBigFile, HugeTensorCountIsAnErrorNotAnAllocation) {
  // (kSize - 24) / 24 tensors pass the count check; the first tensor name is empty.
  GgufBytes b;
  b.Header(3, (kSize - 24) / 24 - 1, 0);
  if (!Make(b.bytes())) GTEST_SKIP() << "no sparse files here";
  auto f = GgufFile::Open(path_);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("tensor name"));
}

TEST_F(SparseBigFile, HugeStringArrayCountIsAnErrorNotAnAllocation) {
  GgufBytes b;
  b.Header(3, 0, 1).Key("tokenizer.ggml.tokens", ValueType::kArray).U32(8);
  b.U64((kSize - b.size() - 8) / 8 - 1).U64(1ull << 63);  // count, then a bad first length
  if (!Make(b.bytes())) GTEST_SKIP() << "no sparse files here";
  auto f = GgufFile::Open(path_);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("tokenizer.ggml.tokens"));
}

}  // namespace
}  // namespace tandem::gguf
