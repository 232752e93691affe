// DequantizeRowRef and QuantizeRowRef against goldens from an independent implementation:
// gguf-py (llama.cpp's numpy port of ggml's reference code), written to
// tests/data/gguf/quant_goldens.bin by tools/goldens/quant_goldens.py (the format is described
// there). Every value must agree bit for bit: a model must dequantize here exactly as in
// llama.cpp.
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gguf/ggml_type.h"
#include "gguf/quant.h"
#include "gtest/gtest.h"

namespace tandem::gguf {
namespace {

struct Record {
  uint32_t kind;  // 0: dequantize blocks -> values, 1: quantize values -> blocks
  uint32_t type;
  uint64_t n;
  std::vector<uint8_t> blocks;
  std::vector<float> values;
};

std::vector<Record> LoadGoldens() {
  const std::string path = std::string(TANDEM_SOURCE_DIR) + "/tests/data/gguf/quant_goldens.bin";
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
  size_t pos = 0;
  bool ok = true;
  auto read = [&](void* dst, uint64_t n) {
    if (!ok || n > bytes.size() - pos) {
      ok = false;
      return;
    }
    std::memcpy(dst, bytes.data() + pos, n);
    pos += n;
  };
  char magic[4] = {};
  uint32_t version = 0, count = 0;
  read(magic, 4);
  read(&version, 4);
  read(&count, 4);
  EXPECT_EQ(std::string(magic, 4), "TQGD");
  EXPECT_EQ(version, 1u);
  std::vector<Record> records;
  for (uint32_t r = 0; r < count && ok; ++r) {
    Record rec;
    uint64_t m = 0;
    read(&rec.kind, 4);
    read(&rec.type, 4);
    read(&rec.n, 8);
    read(&m, 8);
    if (!ok || m > bytes.size() || rec.n > bytes.size()) break;
    rec.blocks.resize(m);
    rec.values.resize(rec.n);
    read(rec.blocks.data(), m);
    read(rec.values.data(), rec.n * 4);
    records.push_back(std::move(rec));
  }
  EXPECT_TRUE(ok) << path << " is truncated";
  EXPECT_EQ(pos, bytes.size()) << path << " has trailing bytes";
  EXPECT_EQ(records.size(), count);
  return records;
}

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

class QuantGoldensTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { records_ = new std::vector<Record>(LoadGoldens()); }
  static void TearDownTestSuite() {
    delete records_;
    records_ = nullptr;
  }
  static std::vector<Record>* records_;
};
std::vector<Record>* QuantGoldensTest::records_ = nullptr;

TEST_F(QuantGoldensTest, CoverEveryComputedType) {
  std::set<std::pair<uint32_t, GgmlType>> seen;
  for (const auto& r : *records_) seen.insert({r.kind, static_cast<GgmlType>(r.type)});
  for (GgmlType t : {GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ8_0, GgmlType::kQ4_K,
                     GgmlType::kQ6_K, GgmlType::kF16, GgmlType::kBF16}) {
    EXPECT_TRUE(seen.count({0, t})) << "no dequantization golden for " << TypeName(t);
  }
  for (GgmlType t :
       {GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ8_0, GgmlType::kF16, GgmlType::kBF16}) {
    EXPECT_TRUE(seen.count({1, t})) << "no quantization golden for " << TypeName(t);
  }
}

TEST_F(QuantGoldensTest, DequantizeMatchesGgufPyBitForBit) {
  int checked = 0;
  for (const auto& r : *records_) {
    if (r.kind != 0) continue;
    const GgmlType type = static_cast<GgmlType>(r.type);
    SCOPED_TRACE(std::string(TypeName(type)));
    const int64_t n = static_cast<int64_t>(r.n);
    ASSERT_EQ(static_cast<int64_t>(r.blocks.size()), RowBytes(type, n));
    std::vector<float> got(r.n);
    ASSERT_TRUE(DequantizeRowRef(type, r.blocks.data(), got.data(), n).ok());
    const int64_t block = Traits(type).block_size;
    int mismatches = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (Bits(got[i]) != Bits(r.values[i])) {
        if (++mismatches <= 5) {
          ADD_FAILURE() << "block " << i / block << " element " << i % block << ": got " << got[i]
                        << " (0x" << std::hex << Bits(got[i]) << "), gguf-py " << r.values[i]
                        << " (0x" << Bits(r.values[i]) << ")" << std::dec;
        }
      }
    }
    EXPECT_EQ(mismatches, 0);
    ++checked;
  }
  EXPECT_GE(checked, 7);
}

TEST_F(QuantGoldensTest, QuantizeMatchesGgufPyBitForBit) {
  int checked = 0;
  for (const auto& r : *records_) {
    if (r.kind != 1) continue;
    const GgmlType type = static_cast<GgmlType>(r.type);
    SCOPED_TRACE(std::string(TypeName(type)));
    const int64_t n = static_cast<int64_t>(r.n);
    ASSERT_EQ(static_cast<int64_t>(r.blocks.size()), RowBytes(type, n));
    std::vector<uint8_t> got(r.blocks.size());
    ASSERT_TRUE(QuantizeRowRef(type, r.values.data(), got.data(), n).ok());
    const int64_t block_bytes = Traits(type).block_bytes;
    int mismatches = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      if (got[i] != r.blocks[i] && ++mismatches <= 5) {
        ADD_FAILURE() << "block " << i / block_bytes << " byte " << i % block_bytes << ": got 0x"
                      << std::hex << int{got[i]} << ", gguf-py 0x" << int{r.blocks[i]} << std::dec;
      }
    }
    EXPECT_EQ(mismatches, 0);
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

}  // namespace
}  // namespace tandem::gguf
