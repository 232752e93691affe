// ConvertGguf: a quantized file converted to F32 (or F16/BF16) keeps every metadata value and
// holds exactly the reference dequantization of each tensor.
#include "gguf/convert.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "gguf/quant.h"
#include "gguf_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::gguf {
namespace {

using ::tandem::gguf::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::Pair;

std::vector<uint8_t> QuantizedRandom(GgmlType type, const std::vector<int64_t>& dims,
                                     std::mt19937& rng) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  std::vector<uint8_t> out(static_cast<size_t>(RowBytes(type, dims[0]) * (n / dims[0])));
  EXPECT_TRUE(QuantizeRowRef(type, x.data(), out.data(), n).ok());
  return out;
}

Value Scalar(ValueType type, uint64_t bits) {
  Value v;
  v.type = type;
  v.u = bits;
  return v;
}

// Values are equal when their type and content are: numbers bit for bit, arrays element-wise.
void ExpectSameValue(const Value& a, const Value& b, const std::string& key) {
  SCOPED_TRACE(key);
  ASSERT_EQ(a.type, b.type);
  switch (a.type) {
    case ValueType::kString: EXPECT_EQ(a.s, b.s); break;
    case ValueType::kBool: EXPECT_EQ(a.b, b.b); break;
    case ValueType::kFloat32:
    case ValueType::kFloat64: EXPECT_EQ(a.f, b.f); break;
    case ValueType::kArray: {
      ASSERT_EQ(a.elem_type, b.elem_type);
      ASSERT_EQ(a.count, b.count);
      if (a.elem_type == ValueType::kString) {
        EXPECT_EQ(a.strings, b.strings);
      } else {
        size_t size = 0;
        switch (a.elem_type) {
          case ValueType::kUint8:
          case ValueType::kInt8:
          case ValueType::kBool: size = 1; break;
          case ValueType::kUint16:
          case ValueType::kInt16: size = 2; break;
          case ValueType::kUint32:
          case ValueType::kInt32:
          case ValueType::kFloat32: size = 4; break;
          default: size = 8; break;
        }
        EXPECT_EQ(std::memcmp(a.raw, b.raw, a.count * size), 0);
      }
      break;
    }
    default: EXPECT_EQ(a.u, b.u); EXPECT_EQ(a.i, b.i);
  }
}

class ConvertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937 rng(99);
    GgufWriter w;
    w.SetString("general.architecture", "llama");
    w.SetString("general.name", "tiny");
    w.SetUint32("general.file_type", 3);  // Q4_1: must become F32 (0) after conversion
    w.SetUint32("llama.block_count", 1);
    w.SetFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    w.SetBool("tokenizer.ggml.add_bos_token", true);
    w.SetStringArray("tokenizer.ggml.tokens", {"<s>", "</s>", "a", "b"});
    w.SetInt32Array("tokenizer.ggml.token_type", {3, 3, 1, 1});
    w.SetFloat32Array("tokenizer.ggml.scores", {0.0f, 0.0f, -1.5f, -2.25f});
    w.SetUint64("k.u64", 1ull << 40);
    w.SetInt32("k.i32", -7);
    ASSERT_TRUE(w.CopyValue("k.u8", Scalar(ValueType::kUint8, 9)));
    ASSERT_TRUE(w.CopyValue("k.i16", Scalar(ValueType::kInt16, static_cast<uint64_t>(-300))));
    ASSERT_TRUE(w.CopyValue("k.i64", Scalar(ValueType::kInt64, static_cast<uint64_t>(-5))));
    Value f64;
    f64.type = ValueType::kFloat64;
    f64.f = 0.1;
    ASSERT_TRUE(w.CopyValue("k.f64", f64));
    const std::vector<uint8_t> u16s = {1, 0, 2, 0};
    Value arr;
    arr.type = ValueType::kArray;
    arr.elem_type = ValueType::kUint16;
    arr.count = 2;
    arr.raw = u16s.data();
    ASSERT_TRUE(w.CopyValue("k.u16s", arr));
    w.set_alignment(64);  // not kept: the output uses the default alignment
    w.AddTensor("token_embd.weight", {64, 3}, GgmlType::kQ4_1,
                QuantizedRandom(GgmlType::kQ4_1, {64, 3}, rng));
    w.AddTensor("blk.0.attn_q.weight", {32, 4}, GgmlType::kQ8_0,
                QuantizedRandom(GgmlType::kQ8_0, {32, 4}, rng));
    w.AddTensor("blk.0.attn_norm.weight", {32}, GgmlType::kQ8_0,
                QuantizedRandom(GgmlType::kQ8_0, {32}, rng));
    w.AddTensor("blk.0.ffn_up.weight", {256, 2, 1}, GgmlType::kQ4_K,
                QuantizedRandom(GgmlType::kQ4_K, {256, 2, 1}, rng));
    w.AddTensor("output_norm.weight", {8}, GgmlType::kF32,
                QuantizedRandom(GgmlType::kF32, {8}, rng));
    src_path_ = dir_.File("src.gguf");
    ASSERT_TRUE(w.WriteFile(src_path_).ok());
    auto src = GgufFile::Open(src_path_);
    ASSERT_TRUE(src.ok()) << src.status();
    src_ = *std::move(src);
  }

  std::unique_ptr<GgufFile> Convert(GgmlType target) {
    const std::string out =
        dir_.File(std::string("out_") + std::string(TypeName(target)) + ".gguf");
    ConvertOptions options;
    options.target = target;
    options.progress = [&](size_t done, size_t total) { progress_.emplace_back(done, total); };
    const auto status = ConvertGguf(src_path_, out, options);
    EXPECT_TRUE(status.ok()) << status;
    auto f = GgufFile::Open(out);
    EXPECT_TRUE(f.ok()) << f.status();
    return f.ok() ? *std::move(f) : nullptr;
  }

  void ExpectSameMetadata(const GgufFile& out, uint64_t file_type) {
    std::vector<std::string> want_keys;
    for (const auto& key : src_->keys()) {
      if (key == "general.alignment") continue;
      want_keys.push_back(key);
      if (key == "general.file_type") continue;
      const Value* v = out.Find(key);
      ASSERT_NE(v, nullptr) << key;
      ExpectSameValue(*src_->Find(key), *v, key);
    }
    std::vector<std::string> got_keys = out.keys();
    std::sort(got_keys.begin(), got_keys.end());
    std::sort(want_keys.begin(), want_keys.end());
    EXPECT_EQ(got_keys, want_keys);
    EXPECT_EQ(*out.GetUint("general.file_type"), file_type);
    EXPECT_EQ(out.alignment(), 32u);
  }

  std::vector<float> Dequantized(const TensorInfo& t) {
    std::vector<float> v(t.num_elements);
    EXPECT_TRUE(DequantizeRowRef(t.type, t.data, v.data(), t.num_elements).ok());
    return v;
  }

  TempDir dir_;
  std::string src_path_;
  std::unique_ptr<GgufFile> src_;
  std::vector<std::pair<size_t, size_t>> progress_;
};

TEST_F(ConvertTest, ToF32KeepsMetadataAndDequantizesExactly) {
  auto out = Convert(GgmlType::kF32);
  ASSERT_NE(out, nullptr);
  ExpectSameMetadata(*out, 0);
  ASSERT_EQ(out->tensors().size(), src_->tensors().size());
  for (size_t i = 0; i < src_->tensors().size(); ++i) {
    const TensorInfo& s = src_->tensors()[i];
    const TensorInfo& o = out->tensors()[i];
    SCOPED_TRACE(s.name);
    EXPECT_EQ(o.name, s.name);
    EXPECT_EQ(o.dims, s.dims);
    EXPECT_EQ(o.type, GgmlType::kF32);
    ASSERT_EQ(o.num_bytes, s.num_elements * 4);
    const std::vector<float> want = Dequantized(s);
    EXPECT_EQ(std::memcmp(o.data, want.data(), want.size() * 4), 0);
  }
  EXPECT_THAT(progress_, ElementsAre(Pair(1, 5), Pair(2, 5), Pair(3, 5), Pair(4, 5), Pair(5, 5)));
}

TEST_F(ConvertTest, ToF16AndBf16KeepVectorsInF32) {
  for (GgmlType target : {GgmlType::kF16, GgmlType::kBF16}) {
    SCOPED_TRACE(std::string(TypeName(target)));
    auto out = Convert(target);
    ASSERT_NE(out, nullptr);
    ExpectSameMetadata(*out, target == GgmlType::kF16 ? 1 : 32);
    for (const TensorInfo& s : src_->tensors()) {
      const TensorInfo* o = out->FindTensor(s.name);
      ASSERT_NE(o, nullptr) << s.name;
      const std::vector<float> want = Dequantized(s);
      if (s.dims.size() == 1) {
        EXPECT_EQ(o->type, GgmlType::kF32) << s.name;
        EXPECT_EQ(std::memcmp(o->data, want.data(), want.size() * 4), 0) << s.name;
      } else {
        EXPECT_EQ(o->type, target) << s.name;
        std::vector<uint8_t> encoded(static_cast<size_t>(RowBytes(target, s.num_elements)));
        ASSERT_TRUE(QuantizeRowRef(target, want.data(), encoded.data(), s.num_elements).ok());
        ASSERT_EQ(o->num_bytes, static_cast<int64_t>(encoded.size())) << s.name;
        EXPECT_EQ(std::memcmp(o->data, encoded.data(), encoded.size()), 0) << s.name;
      }
    }
  }
}

TEST_F(ConvertTest, RejectsQuantizedTargets) {
  ConvertOptions options;
  options.target = GgmlType::kQ8_0;
  const auto s = ConvertGguf(src_path_, dir_.File("out.gguf"), options);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir_.File("out.gguf")));
}

TEST_F(ConvertTest, MissingInputIsNotFound) {
  const auto s = ConvertGguf(dir_.File("missing.gguf"), dir_.File("out.gguf"), ConvertOptions{});
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir_.File("out.gguf")));
}

// general.alignment = 1 is valid GGUF: tensor data then starts at odd addresses of the mapping.
TEST(ConvertAlignmentTest, UnalignedTensorDataConverts) {
  TempDir dir;
  std::mt19937 rng(5);
  GgufWriter w;
  w.set_alignment(1);
  w.SetString("general.name", "odds");  // makes the header an odd number of bytes
  const std::vector<std::pair<GgmlType, std::vector<int64_t>>> specs = {
      {GgmlType::kQ8_0, {32, 2}},  {GgmlType::kF16, {4, 2}},   {GgmlType::kQ4_K, {256, 1}},
      {GgmlType::kQ6_K, {256, 1}}, {GgmlType::kQ4_0, {32, 1}}, {GgmlType::kBF16, {2, 2}}};
  for (size_t i = 0; i < specs.size(); ++i) {
    std::string name = "t";
    name += std::to_string(i);
    w.AddTensor(name, specs[i].second, specs[i].first,
                QuantizedRandom(specs[i].first, specs[i].second, rng));
  }
  ASSERT_TRUE(w.WriteFile(dir.File("src.gguf")).ok());
  auto src = GgufFile::Open(dir.File("src.gguf"));
  ASSERT_TRUE(src.ok()) << src.status();
  for (const TensorInfo& t : (*src)->tensors()) {
    ASSERT_EQ(reinterpret_cast<uintptr_t>(t.data) % 2, 1u) << t.name << " is not at an odd address";
  }
  ASSERT_TRUE(ConvertGguf(dir.File("src.gguf"), dir.File("out.gguf"), ConvertOptions{}).ok());
  auto out = GgufFile::Open(dir.File("out.gguf"));
  ASSERT_TRUE(out.ok()) << out.status();
  for (const TensorInfo& t : (*src)->tensors()) {
    const std::vector<uint8_t> aligned(t.data, t.data + t.num_bytes);
    std::vector<float> want(t.num_elements);
    ASSERT_TRUE(DequantizeRowRef(t.type, aligned.data(), want.data(), t.num_elements).ok());
    const TensorInfo* o = (*out)->FindTensor(t.name);
    ASSERT_NE(o, nullptr);
    EXPECT_EQ(std::memcmp(o->data, want.data(), want.size() * 4), 0) << t.name;
  }
}

TEST(ConvertErrorTest, UnsupportedSourceTypeFailsWithoutOutput) {
  TempDir dir;
  GgufWriter w;
  w.AddTensor("w", {32, 1}, GgmlType::kQ5_0, std::vector<uint8_t>(22, 0));
  ASSERT_TRUE(w.WriteFile(dir.File("q5.gguf")).ok());
  const auto s = ConvertGguf(dir.File("q5.gguf"), dir.File("out.gguf"), ConvertOptions{});
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_FALSE(std::filesystem::exists(dir.File("out.gguf")));
}

}  // namespace
}  // namespace tandem::gguf
