// GgufFile reading valid files: files written by GgufWriter and hand-built v2/v3 files read
// back with every metadata type, tensor infos, data pointers and alignment; typed getters.
#include "gguf/gguf_file.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "gguf/gguf_writer.h"
#include "gguf_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::gguf {
namespace {

using ::tandem::gguf::testing::GgufBytes;
using ::tandem::gguf::testing::ParseCopy;
using ::tandem::gguf::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A value of a type GgufWriter has no setter for, written through CopyValue.
Value IntValue(ValueType type, uint64_t bits) {
  Value v;
  v.type = type;
  v.u = bits;
  v.i = static_cast<int64_t>(bits);
  return v;
}

template <typename T>
std::vector<uint8_t> RawBytes(const std::vector<T>& xs) {
  std::vector<uint8_t> out(xs.size() * sizeof(T));
  if (!xs.empty()) std::memcpy(out.data(), xs.data(), out.size());
  return out;
}

Value ArrayValue(ValueType elem, uint64_t count, const std::vector<uint8_t>& raw) {
  Value v;
  v.type = ValueType::kArray;
  v.elem_type = elem;
  v.count = count;
  v.raw = raw.data();
  return v;
}

std::vector<uint8_t> Iota(size_t n, uint8_t start) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(start + i * 7);
  return v;
}

// Every metadata type GGUF has, through the writer's setters and CopyValue.
class AllTypesFile : public ::testing::Test {
 protected:
  void SetUp() override {
    GgufWriter w;
    w.SetUint32("t.u32", 4000000000u);
    w.SetUint64("t.u64", 0xFEDCBA9876543210ull);
    w.SetInt32("t.i32", -123456789);
    w.SetFloat32("t.f32", 3.25f);
    w.SetBool("t.true", true);
    w.SetBool("t.false", false);
    w.SetString("t.str", "h\xc3\xa9llo");
    w.SetString("t.empty", "");
    w.SetString("t.nul", std::string("a\0b", 3));
    w.SetStringArray("t.strs", {"", "one", "two words"});
    w.SetStringArray("t.strs_empty", {});
    w.SetInt32Array("t.i32s", {1, -2, std::numeric_limits<int32_t>::max(),
                               std::numeric_limits<int32_t>::min()});
    w.SetFloat32Array("t.f32s", {0.5f, -1e30f, 1e-30f});
    ASSERT_TRUE(w.CopyValue("t.u8", IntValue(ValueType::kUint8, 200)));
    ASSERT_TRUE(w.CopyValue("t.i8", IntValue(ValueType::kInt8, static_cast<uint64_t>(-100))));
    ASSERT_TRUE(w.CopyValue("t.u16", IntValue(ValueType::kUint16, 65000)));
    ASSERT_TRUE(w.CopyValue("t.i16", IntValue(ValueType::kInt16, static_cast<uint64_t>(-30000))));
    ASSERT_TRUE(w.CopyValue(
        "t.i64", IntValue(ValueType::kInt64,
                          static_cast<uint64_t>(std::numeric_limits<int64_t>::min() + 1))));
    Value f64;
    f64.type = ValueType::kFloat64;
    f64.f = 1e300;  // not representable as a float: must stay a double
    ASSERT_TRUE(w.CopyValue("t.f64", f64));
    const auto u8s = RawBytes<uint8_t>({0, 255, 17});
    const auto i64s = RawBytes<int64_t>({-5, std::numeric_limits<int64_t>::max()});
    const auto f64s = RawBytes<double>({0.25, -2.5});
    const auto bools = RawBytes<uint8_t>({1, 0, 1});
    const auto u16s = RawBytes<uint16_t>({});
    ASSERT_TRUE(w.CopyValue("t.u8s", ArrayValue(ValueType::kUint8, 3, u8s)));
    ASSERT_TRUE(w.CopyValue("t.i64s", ArrayValue(ValueType::kInt64, 2, i64s)));
    ASSERT_TRUE(w.CopyValue("t.f64s", ArrayValue(ValueType::kFloat64, 2, f64s)));
    ASSERT_TRUE(w.CopyValue("t.bools", ArrayValue(ValueType::kBool, 3, bools)));
    ASSERT_TRUE(w.CopyValue("t.u16s_empty", ArrayValue(ValueType::kUint16, 0, u16s)));
    bytes_ = w.Serialize();
    path_ = dir_.File("all_types.gguf");
    ASSERT_TRUE(w.WriteFile(path_).ok());
    auto f = GgufFile::Open(path_);
    ASSERT_TRUE(f.ok()) << f.status();
    file_ = *std::move(f);
  }

  TempDir dir_;
  std::string path_;
  std::vector<uint8_t> bytes_;
  std::unique_ptr<GgufFile> file_;
};

TEST_F(AllTypesFile, KeysKeepFileOrder) {
  EXPECT_THAT(file_->keys(),
              ElementsAre("t.u32", "t.u64", "t.i32", "t.f32", "t.true", "t.false", "t.str",
                          "t.empty", "t.nul", "t.strs", "t.strs_empty", "t.i32s", "t.f32s", "t.u8",
                          "t.i8", "t.u16", "t.i16", "t.i64", "t.f64", "t.u8s", "t.i64s", "t.f64s",
                          "t.bools", "t.u16s_empty"));
  EXPECT_EQ(file_->version(), 3u);
  EXPECT_EQ(file_->alignment(), 32u);
  EXPECT_EQ(file_->path(), path_);
  EXPECT_EQ(file_->file_size(), bytes_.size());
  EXPECT_TRUE(file_->tensors().empty());
}

TEST_F(AllTypesFile, ValueTypesAreThoseWritten) {
  const std::vector<std::pair<std::string, ValueType>> want = {
      {"t.u32", ValueType::kUint32},  {"t.u64", ValueType::kUint64}, {"t.i32", ValueType::kInt32},
      {"t.f32", ValueType::kFloat32}, {"t.true", ValueType::kBool},  {"t.str", ValueType::kString},
      {"t.strs", ValueType::kArray},  {"t.u8", ValueType::kUint8},   {"t.i8", ValueType::kInt8},
      {"t.u16", ValueType::kUint16},  {"t.i16", ValueType::kInt16},  {"t.i64", ValueType::kInt64},
      {"t.f64", ValueType::kFloat64}};
  for (const auto& [key, type] : want) {
    const Value* v = file_->Find(key);
    ASSERT_NE(v, nullptr) << key;
    EXPECT_EQ(v->type, type) << key;
  }
  EXPECT_EQ(file_->Find("t.strs")->elem_type, ValueType::kString);
  EXPECT_EQ(file_->Find("t.u8s")->elem_type, ValueType::kUint8);
  EXPECT_EQ(file_->Find("t.bools")->elem_type, ValueType::kBool);
  EXPECT_EQ(file_->Find("t.u16s_empty")->count, 0u);
  EXPECT_EQ(file_->Find("missing"), nullptr);
}

TEST_F(AllTypesFile, UnsignedScalars) {
  EXPECT_EQ(*file_->GetUint("t.u8"), 200u);
  EXPECT_EQ(*file_->GetUint("t.u16"), 65000u);
  EXPECT_EQ(*file_->GetUint("t.u32"), 4000000000u);
  EXPECT_EQ(*file_->GetUint("t.u64"), 0xFEDCBA9876543210ull);
  EXPECT_EQ(*file_->GetInt("t.u32"), 4000000000);
  EXPECT_EQ(*file_->GetFloat("t.u32"), 4e9);
  EXPECT_EQ(*file_->GetFloat("t.u64"), static_cast<double>(0xFEDCBA9876543210ull));
  // Above INT64_MAX: no silent wrap to a negative number.
  EXPECT_EQ(file_->GetInt("t.u64").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AllTypesFile, SignedScalars) {
  EXPECT_EQ(*file_->GetInt("t.i8"), -100);
  EXPECT_EQ(*file_->GetInt("t.i16"), -30000);
  EXPECT_EQ(*file_->GetInt("t.i32"), -123456789);
  EXPECT_EQ(*file_->GetInt("t.i64"), std::numeric_limits<int64_t>::min() + 1);
  EXPECT_EQ(*file_->GetFloat("t.i32"), -123456789.0);
  // A negative number is not a uint.
  for (const char* key : {"t.i8", "t.i16", "t.i32", "t.i64"}) {
    auto u = file_->GetUint(key);
    EXPECT_EQ(u.status().code(), absl::StatusCode::kInvalidArgument) << key;
    EXPECT_THAT(std::string(u.status().message()), HasSubstr(key));
  }
}

TEST_F(AllTypesFile, FloatsBoolsStrings) {
  EXPECT_EQ(*file_->GetFloat("t.f32"), 3.25);
  EXPECT_EQ(*file_->GetFloat("t.f64"), 1e300);
  EXPECT_TRUE(*file_->GetBool("t.true"));
  EXPECT_FALSE(*file_->GetBool("t.false"));
  EXPECT_EQ(*file_->GetString("t.str"), "h\xc3\xa9llo");
  EXPECT_EQ(*file_->GetString("t.empty"), "");
  EXPECT_EQ(*file_->GetString("t.nul"), std::string_view("a\0b", 3));
}

TEST_F(AllTypesFile, Arrays) {
  EXPECT_THAT(*file_->GetStringArray("t.strs"), ElementsAre("", "one", "two words"));
  EXPECT_TRUE(file_->GetStringArray("t.strs_empty")->empty());
  EXPECT_THAT(*file_->GetIntArray("t.i32s"), ElementsAre(1, -2, std::numeric_limits<int32_t>::max(),
                                                         std::numeric_limits<int32_t>::min()));
  EXPECT_THAT(*file_->GetFloatArray("t.f32s"), ElementsAre(0.5f, -1e30f, 1e-30f));
  EXPECT_THAT(*file_->GetIntArray("t.u8s"), ElementsAre(0, 255, 17));
  EXPECT_THAT(*file_->GetIntArray("t.i64s"), ElementsAre(-5, std::numeric_limits<int64_t>::max()));
  EXPECT_THAT(*file_->GetFloatArray("t.f64s"), ElementsAre(0.25f, -2.5f));
  EXPECT_THAT(*file_->GetIntArray("t.bools"), ElementsAre(1, 0, 1));
  EXPECT_TRUE(file_->GetIntArray("t.u16s_empty")->empty());
}

TEST_F(AllTypesFile, ParseOfSerializedBytesMatchesOpen) {
  // WriteFile and Serialize produce the same bytes, and Parse reads them like Open.
  std::ifstream in(path_, std::ios::binary);
  std::vector<uint8_t> on_disk((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(on_disk, bytes_);
  auto parsed = ParseCopy(bytes_, "mem");
  ASSERT_TRUE(parsed.file.ok()) << parsed.file.status();
  EXPECT_EQ((*parsed.file)->keys(), file_->keys());
  EXPECT_EQ((*parsed.file)->path(), "mem");
  EXPECT_FALSE(std::filesystem::exists(path_ + ".tmp"));
}

TEST_F(AllTypesFile, MissingKeyIsNotFoundAndNamesTheKey) {
  for (auto status :
       {file_->GetUint("no.such").status(), file_->GetInt("no.such").status(),
        file_->GetFloat("no.such").status(), file_->GetBool("no.such").status(),
        file_->GetString("no.such").status(), file_->GetStringArray("no.such").status(),
        file_->GetIntArray("no.such").status(), file_->GetFloatArray("no.such").status()}) {
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr("no.such"));
  }
}

TEST_F(AllTypesFile, WrongTypeIsInvalidArgumentNamingBothTypes) {
  auto s = file_->GetUint("t.str").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("t.str"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("string"));

  const std::vector<absl::Status> mismatches = {
      file_->GetUint("t.f32").status(),         file_->GetUint("t.true").status(),
      file_->GetInt("t.str").status(),          file_->GetInt("t.i32s").status(),
      file_->GetFloat("t.str").status(),        file_->GetFloat("t.true").status(),
      file_->GetFloat("t.f32s").status(),       file_->GetBool("t.u8").status(),
      file_->GetString("t.u32").status(),       file_->GetString("t.strs").status(),
      file_->GetStringArray("t.i32s").status(), file_->GetStringArray("t.str").status(),
      file_->GetIntArray("t.f32s").status(),    file_->GetIntArray("t.strs").status(),
      file_->GetIntArray("t.i32").status(),     file_->GetFloatArray("t.i32s").status(),
      file_->GetFloatArray("t.strs").status(),  file_->GetFloatArray("t.f32").status()};
  for (const auto& st : mismatches) {
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  }
}

TEST_F(AllTypesFile, OrDefaultsApplyOnlyWhenMissing) {
  EXPECT_EQ(*file_->GetUintOr("no.such", 77), 77u);
  EXPECT_EQ(*file_->GetUintOr("t.u32", 77), 4000000000u);
  EXPECT_EQ(file_->GetUintOr("t.str", 77).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(file_->GetUintOr("t.i8", 77).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*file_->GetFloatOr("no.such", 1.5), 1.5);
  EXPECT_EQ(*file_->GetFloatOr("t.f32", 1.5), 3.25);
  EXPECT_EQ(file_->GetFloatOr("t.str", 1.5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(*file_->GetBoolOr("no.such", true));
  EXPECT_FALSE(*file_->GetBoolOr("t.false", true));
  EXPECT_EQ(file_->GetBoolOr("t.u8", true).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AllTypesFile, DescribeShowsValuesReadably) {
  EXPECT_EQ(GgufFile::Describe(*file_->Find("t.str")), "\"h\xc3\xa9llo\"");
  EXPECT_EQ(GgufFile::Describe(*file_->Find("t.true")), "true");
  EXPECT_EQ(GgufFile::Describe(*file_->Find("t.i32")), "-123456789");
  EXPECT_EQ(GgufFile::Describe(*file_->Find("t.u64")), "18364758544493064720");
  EXPECT_EQ(GgufFile::Describe(*file_->Find("t.f32")), "3.25");
  EXPECT_EQ(GgufFile::Describe(*file_->Find("t.strs")),
            "[\"\", \"one\", \"two words\"] (3 string)");
  EXPECT_EQ(GgufFile::Describe(*file_->Find("t.i32s"), 2), "[1, -2, ...] (4 int32)");
  EXPECT_EQ(GgufFile::Describe(*file_->Find("t.f64s")), "[0.25, -2.5] (2 float64)");
  EXPECT_EQ(GgufFile::Describe(*file_->Find("t.u16s_empty")), "[] (0 uint16)");
}

TEST(GgufFileTest, DescribeShortensLongStrings) {
  Value v;
  v.type = ValueType::kString;
  const std::string long_text(200, 'x');
  v.s = long_text;
  EXPECT_EQ(GgufFile::Describe(v), "\"" + std::string(120, 'x') + "...\"");
}

// Tensors of several types and sizes written by GgufWriter come back with their shapes, types,
// sizes and exactly their bytes, each starting on an alignment boundary.
void ExpectTensorsRoundTrip(uint32_t alignment) {
  SCOPED_TRACE(::testing::Message() << "alignment " << alignment);
  struct Spec {
    std::string name;
    std::vector<int64_t> dims;
    GgmlType type;
    int64_t elements, bytes, rows;
  };
  const std::vector<Spec> specs = {
      {"token_embd.weight", {4, 3}, GgmlType::kF32, 12, 48, 3},
      {"blk.0.attn_q.weight", {64, 2}, GgmlType::kQ8_0, 128, 136, 2},
      {"blk.0.ffn_up.weight", {32, 3}, GgmlType::kQ4_1, 96, 60, 3},
      {"blk.0.ffn_down.weight", {256, 1, 2}, GgmlType::kQ4_K, 512, 288, 2},
      {"output.weight", {256, 1, 1, 1}, GgmlType::kQ6_K, 256, 210, 1},
      {"norm.weight", {5}, GgmlType::kF16, 5, 10, 1},
      {"bf.weight", {3, 2}, GgmlType::kBF16, 6, 12, 2},
      {"q40.weight", {32}, GgmlType::kQ4_0, 32, 18, 1},
  };
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.set_alignment(alignment);
  for (size_t i = 0; i < specs.size(); ++i) {
    w.AddTensor(specs[i].name, specs[i].dims, specs[i].type,
                Iota(static_cast<size_t>(specs[i].bytes), static_cast<uint8_t>(i * 31)));
  }
  auto parsed = ParseCopy(w.Serialize());
  ASSERT_TRUE(parsed.file.ok()) << parsed.file.status();
  const GgufFile& f = **parsed.file;
  EXPECT_EQ(f.alignment(), alignment);
  if (alignment != 32) {
    EXPECT_EQ(*f.GetUint("general.alignment"), alignment);
  } else {
    EXPECT_EQ(f.Find("general.alignment"), nullptr);
  }
  ASSERT_EQ(f.tensors().size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const Spec& s = specs[i];
    const TensorInfo& t = f.tensors()[i];
    SCOPED_TRACE(s.name);
    EXPECT_EQ(t.name, s.name);
    EXPECT_EQ(t.dims, s.dims);
    EXPECT_EQ(t.type, s.type);
    EXPECT_EQ(t.num_elements, s.elements);
    EXPECT_EQ(t.num_bytes, s.bytes);
    EXPECT_EQ(t.rows(), s.rows);
    EXPECT_EQ(t.row_elements(), s.dims[0]);
    EXPECT_EQ(t.offset % alignment, 0u);
    const size_t at = static_cast<size_t>(t.data - f.file_data());
    EXPECT_EQ(at % alignment, 0u);
    const auto want = Iota(static_cast<size_t>(s.bytes), static_cast<uint8_t>(i * 31));
    EXPECT_EQ(std::vector<uint8_t>(t.data, t.data + t.num_bytes), want);
    EXPECT_EQ(f.FindTensor(s.name), &t);
  }
  EXPECT_EQ(f.FindTensor("nope"), nullptr);
}

TEST(GgufFileTest, TensorsDefaultAlignment) { ExpectTensorsRoundTrip(32); }
TEST(GgufFileTest, TensorsCustomAlignment64) { ExpectTensorsRoundTrip(64); }
TEST(GgufFileTest, TensorsCustomAlignment1) { ExpectTensorsRoundTrip(1); }
TEST(GgufFileTest, TensorsCustomAlignment4096) { ExpectTensorsRoundTrip(4096); }

// A GGUF v2 file built by hand, byte by byte from the spec: every scalar type, arrays of
// numbers, strings and arrays, and two tensors stored out of order.
std::vector<uint8_t> HandBuiltFile(uint32_t version) {
  GgufBytes b;
  b.Header(version, 2, 17);
  b.KvString("general.architecture", "llama");
  b.Key("k.u8", ValueType::kUint8).U8(250);
  b.Key("k.i8", ValueType::kInt8).Put<int8_t>(-7);
  b.Key("k.u16", ValueType::kUint16).Put<uint16_t>(60000);
  b.Key("k.i16", ValueType::kInt16).Put<int16_t>(-12345);
  b.Key("k.u32", ValueType::kUint32).U32(3000000000u);
  b.Key("k.i32", ValueType::kInt32).Put<int32_t>(-2000000000);
  b.Key("k.f32", ValueType::kFloat32).Put<float>(-0.125f);
  b.Key("k.bool", ValueType::kBool).U8(1);
  b.Key("k.u64", ValueType::kUint64).U64(1ull << 60);
  b.Key("k.i64", ValueType::kInt64).Put<int64_t>(-(1ll << 50));
  b.Key("k.f64", ValueType::kFloat64).Put<double>(6.02214076e23);
  b.Key("k.u16s", ValueType::kArray)
      .U32(2)
      .U64(3)
      .Put<uint16_t>(1)
      .Put<uint16_t>(2)
      .Put<uint16_t>(65535);
  b.Key("k.f32s", ValueType::kArray).U32(6).U64(2).Put<float>(1.5f).Put<float>(-3.0f);
  b.Key("k.strs", ValueType::kArray).U32(8).U64(2).Str("<s>").Str("</s>");
  // An array of two arrays of u8: valid, kept as an array whose elements are arrays.
  b.Key("k.nested", ValueType::kArray).U32(9).U64(2);
  b.U32(0).U64(1).U8(9);
  b.U32(0).U64(0);
  b.Key("general.alignment", ValueType::kUint64).U64(16);
  // "b" is stored first in the data section, "a" after it.
  b.TensorInfo("a", {4}, 0, 16);    // 4 floats at data offset 16
  b.TensorInfo("b", {2, 2}, 1, 0);  // 4 halves at data offset 0
  b.PadTo(16);
  b.Put<uint16_t>(0x3c00).Put<uint16_t>(0x4000).Put<uint16_t>(0xc000).Put<uint16_t>(0x0000);
  b.Zeros(8);
  b.Put<float>(1.0f).Put<float>(2.0f).Put<float>(3.0f).Put<float>(4.0f);
  return b.bytes();
}

void ExpectHandBuiltFile(uint32_t version) {
  const auto bytes = HandBuiltFile(version);
  auto parsed = ParseCopy(bytes);
  ASSERT_TRUE(parsed.file.ok()) << parsed.file.status();
  const GgufFile& f = **parsed.file;
  EXPECT_EQ(f.version(), version);
  EXPECT_EQ(f.keys().size(), 17u);
  EXPECT_EQ(*f.GetString("general.architecture"), "llama");
  EXPECT_EQ(*f.GetUint("k.u8"), 250u);
  EXPECT_EQ(*f.GetInt("k.i8"), -7);
  EXPECT_EQ(*f.GetUint("k.u16"), 60000u);
  EXPECT_EQ(*f.GetInt("k.i16"), -12345);
  EXPECT_EQ(*f.GetUint("k.u32"), 3000000000u);
  EXPECT_EQ(*f.GetInt("k.i32"), -2000000000);
  EXPECT_EQ(*f.GetFloat("k.f32"), -0.125);
  EXPECT_TRUE(*f.GetBool("k.bool"));
  EXPECT_EQ(*f.GetUint("k.u64"), 1ull << 60);
  EXPECT_EQ(*f.GetInt("k.i64"), -(1ll << 50));
  EXPECT_EQ(*f.GetFloat("k.f64"), 6.02214076e23);
  EXPECT_THAT(*f.GetIntArray("k.u16s"), ElementsAre(1, 2, 65535));
  EXPECT_THAT(*f.GetFloatArray("k.f32s"), ElementsAre(1.5f, -3.0f));
  EXPECT_THAT(*f.GetStringArray("k.strs"), ElementsAre("<s>", "</s>"));
  const Value* nested = f.Find("k.nested");
  ASSERT_NE(nested, nullptr);
  EXPECT_EQ(nested->elem_type, ValueType::kArray);
  EXPECT_EQ(nested->count, 2u);
  EXPECT_EQ(f.GetIntArray("k.nested").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.alignment(), 16u);

  ASSERT_EQ(f.tensors().size(), 2u);
  const TensorInfo* a = f.FindTensor("a");
  const TensorInfo* b = f.FindTensor("b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const size_t data_start = bytes.size() - 32;  // 8 B of halves, 8 B padding, 16 B of floats
  EXPECT_EQ(static_cast<size_t>(b->data - f.file_data()), data_start);
  EXPECT_EQ(static_cast<size_t>(a->data - f.file_data()), data_start + 16);
  float av[4];
  std::memcpy(av, a->data, sizeof av);
  EXPECT_THAT(av, ElementsAre(1.0f, 2.0f, 3.0f, 4.0f));
  EXPECT_EQ(b->type, GgmlType::kF16);
  EXPECT_EQ(b->dims, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(b->num_bytes, 8);
  uint16_t bv[4];
  std::memcpy(bv, b->data, sizeof bv);
  EXPECT_THAT(bv, ElementsAre(0x3c00, 0x4000, 0xc000, 0x0000));
}

TEST(GgufFileTest, HandBuiltV2) { ExpectHandBuiltFile(2); }
TEST(GgufFileTest, HandBuiltV3) { ExpectHandBuiltFile(3); }

TEST(GgufFileTest, EmptyFileHasNoKeysOrTensors) {
  GgufBytes b;
  b.Header(3, 0, 0);
  auto parsed = ParseCopy(b.bytes());
  ASSERT_TRUE(parsed.file.ok()) << parsed.file.status();
  EXPECT_TRUE((*parsed.file)->keys().empty());
  EXPECT_TRUE((*parsed.file)->tensors().empty());
  EXPECT_EQ((*parsed.file)->alignment(), 32u);
}

TEST(GgufFileTest, AlignmentMayBeAnyIntegerType) {
  for (ValueType t :
       {ValueType::kUint8, ValueType::kUint16, ValueType::kInt32, ValueType::kUint64}) {
    GgufBytes b;
    b.Header(3, 1, 1);
    b.Key("general.alignment", t);
    switch (t) {
      case ValueType::kUint8: b.U8(8); break;
      case ValueType::kUint16: b.Put<uint16_t>(8); break;
      case ValueType::kInt32: b.Put<int32_t>(8); break;
      default: b.U64(8); break;
    }
    b.TensorInfo("w", {2}, 0, 0).PadTo(8).Put<float>(1).Put<float>(2);
    auto parsed = ParseCopy(b.bytes());
    ASSERT_TRUE(parsed.file.ok()) << parsed.file.status();
    EXPECT_EQ((*parsed.file)->alignment(), 8u);
    EXPECT_EQ(static_cast<size_t>((*parsed.file)->tensors()[0].data - (*parsed.file)->file_data()),
              b.size() - 8);
  }
}

TEST(GgufFileTest, LongestNamesAreAccepted) {
  const std::string key(1024, 'k'), name(1024, 't');
  GgufBytes b;
  b.Header(3, 1, 1).KvU32(key, 1).TensorInfo(name, {1}, 0, 0).PadTo(32).Put<float>(5);
  auto parsed = ParseCopy(b.bytes());
  ASSERT_TRUE(parsed.file.ok()) << parsed.file.status();
  EXPECT_EQ(*(*parsed.file)->GetUint(key), 1u);
  EXPECT_NE((*parsed.file)->FindTensor(name), nullptr);
}

TEST(GgufFileTest, OpenMissingFileIsNotFound) {
  TempDir dir;
  auto f = GgufFile::Open(dir.File("absent.gguf"));
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("absent.gguf"));
}

TEST(GgufFileTest, OpenDirectoryOrEmptyFileFails) {
  TempDir dir;
  EXPECT_FALSE(GgufFile::Open(dir.path().string()).ok());
  const std::string empty = dir.File("empty.gguf");
  { std::ofstream(empty, std::ios::binary); }
  auto f = GgufFile::Open(empty);
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("truncated"));
}

TEST(GgufWriterTest, WriteFileIntoMissingDirectoryFails) {
  TempDir dir;
  GgufWriter w;
  w.SetUint32("a", 1);
  EXPECT_FALSE(w.WriteFile(dir.File("no/such/dir/x.gguf")).ok());
}

TEST(GgufWriterTest, CopyValueRefusesNestedArrays) {
  GgufWriter w;
  Value v;
  v.type = ValueType::kArray;
  v.elem_type = ValueType::kArray;
  v.count = 1;
  EXPECT_FALSE(w.CopyValue("nested", v));
  // Nothing half-written: the file still parses with no keys.
  auto parsed = ParseCopy(w.Serialize());
  ASSERT_TRUE(parsed.file.ok()) << parsed.file.status();
  EXPECT_TRUE((*parsed.file)->keys().empty());
}

TEST(GgufWriterTest, CopyValueRoundTripsEveryValueOfAFile) {
  // Reading a file and copying each value into a new writer gives back equal values.
  const auto src_bytes = HandBuiltFile(3);
  auto src = ParseCopy(src_bytes);
  ASSERT_TRUE(src.file.ok()) << src.file.status();
  GgufWriter w;
  for (const auto& key : (*src.file)->keys()) {
    if (key == "k.nested") continue;  // not supported by CopyValue
    ASSERT_TRUE(w.CopyValue(key, *(*src.file)->Find(key))) << key;
  }
  auto dst = ParseCopy(w.Serialize());
  ASSERT_TRUE(dst.file.ok()) << dst.file.status();
  for (const auto& key : (*src.file)->keys()) {
    if (key == "k.nested") continue;
    const Value* a = (*src.file)->Find(key);
    const Value* b = (*dst.file)->Find(key);
    ASSERT_NE(b, nullptr) << key;
    EXPECT_EQ(GgufFile::Describe(*a, 100), GgufFile::Describe(*b, 100)) << key;
    EXPECT_EQ(a->type, b->type) << key;
    EXPECT_EQ(a->elem_type, b->elem_type) << key;
  }
}

}  // namespace
}  // namespace tandem::gguf
