// The CUDA backend's CPU-side logic, tested without a GPU: batch planning (what keeps the
// kernels' memory accesses in range), bf16 weight conversion, and the factory.
#include <cmath>
#include <limits>

#include "common/fp16.h"
#include "engine/backends/cuda/batch_plan.h"
#include "engine/backends/cuda/cuda_backend_factory.h"
#include "engine/backends/cuda/weight_convert.h"
#include "gguf/quant.h"
#include "gtest/gtest.h"

namespace tandem::cuda {
namespace {

ForwardBatch MixedBatch() {
  // Sequence 0: a prefill chunk of 5 rows at positions 16..20 (16 cached); sequence 1: one
  // decode row at position 3.
  ForwardBatch b;
  for (int i = 0; i < 5; ++i) {
    b.tokens.push_back(10 + i);
    b.positions.push_back(16 + i);
    b.slot_mapping.push_back(7 * 4 + (16 + i) % 4);  // block_size 4 below; any slot will do
  }
  b.tokens.push_back(3);
  b.positions.push_back(3);
  b.slot_mapping.push_back(2 * 4 + 3);
  b.sequences.push_back({0, 5, 21, {1, 2, 3, 4, 5, 6}});
  b.sequences.push_back({5, 1, 4, {2}});
  b.logit_rows = {4, 5};
  return b;
}

TEST(BatchPlanTest, SplitsDecodeRowsAndConcatenatesTables) {
  auto plan = PlanBatch(MixedBatch(), 4, 64);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->row_seq, (std::vector<int32_t>{0, 0, 0, 0, 0, 1}));
  EXPECT_EQ(plan->seq_block_offset, (std::vector<int32_t>{0, 6}));
  EXPECT_EQ(plan->block_tables, (std::vector<int32_t>{1, 2, 3, 4, 5, 6, 2}));
  EXPECT_EQ(plan->decode_rows, (std::vector<int32_t>{5}));
  EXPECT_EQ(plan->max_decode_keys, 4);
  EXPECT_EQ(plan->max_block_id, 7);  // from slot_mapping
}

TEST(BatchPlanTest, SequencesWithoutRowsAreIgnored) {
  ForwardBatch b = MixedBatch();
  b.sequences.insert(b.sequences.begin() + 1, ForwardSequence{5, 0, 9, {9, 9, 9}});
  auto plan = PlanBatch(b, 4, 64);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->row_seq, (std::vector<int32_t>{0, 0, 0, 0, 0, 2}));
  EXPECT_EQ(plan->decode_rows, (std::vector<int32_t>{5}));
  EXPECT_EQ(plan->seq_block_offset, (std::vector<int32_t>{0, 6, 9}));
}

TEST(BatchPlanTest, RejectsWhatWouldReadOutOfRange) {
  {
    ForwardBatch b = MixedBatch();
    b.sequences[0].block_table.pop_back();  // position 20 needs 6 blocks of 4
    EXPECT_FALSE(PlanBatch(b, 4, 64).ok());
  }
  {
    ForwardBatch b = MixedBatch();
    b.positions[0] = 64;  // beyond the RoPE table
    EXPECT_EQ(PlanBatch(b, 4, 64).status().code(), absl::StatusCode::kOutOfRange);
  }
  {
    ForwardBatch b = MixedBatch();
    b.sequences.pop_back();  // row 5 in no sequence
    EXPECT_FALSE(PlanBatch(b, 4, 64).ok());
  }
  {
    ForwardBatch b = MixedBatch();
    b.sequences[1].query_start = 4;  // row 4 in two sequences
    EXPECT_FALSE(PlanBatch(b, 4, 64).ok());
  }
  {
    ForwardBatch b = MixedBatch();
    b.logit_rows.push_back(6);
    EXPECT_FALSE(PlanBatch(b, 4, 64).ok());
  }
  {
    ForwardBatch b = MixedBatch();
    b.sequences[0].block_table[2] = -1;
    EXPECT_FALSE(PlanBatch(b, 4, 64).ok());
  }
  EXPECT_FALSE(PlanBatch(MixedBatch(), 0, 64).ok());  // no KV cache yet
}

TEST(BatchPlanTest, PrefillTilesStayInsideSequences) {
  ForwardBatch b;
  b.sequences.push_back({0, 10, 10, {}});
  b.sequences.push_back({10, 1, 5, {}});  // decode: no tile
  b.sequences.push_back({11, 3, 3, {}});
  EXPECT_EQ(PrefillTiles(b, 4), (std::vector<int32_t>{0, 4, 4, 4, 8, 2, 11, 3}));
  EXPECT_EQ(PrefillTiles(b, 16), (std::vector<int32_t>{0, 10, 11, 3}));
}

TEST(WeightConvertTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(F32ToBf16(-2.0f), 0xc000);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(F32ToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6).
  EXPECT_EQ(F32ToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(Bf16ToF32(F32ToBf16(std::numeric_limits<float>::infinity())),
            std::numeric_limits<float>::infinity());
  for (float x : {0.1f, -3.14159f, 65504.0f, 1e-30f, 7.0f}) {
    EXPECT_EQ(F32ToBf16(x), Fp32ToBf16(x)) << x;  // agrees with the project's converter
  }
}

TEST(WeightConvertTest, DequantizesEveryTypeToBf16) {
  constexpr int64_t kCols = 256, kRows = 3;
  std::vector<float> src(kCols * kRows);
  for (size_t i = 0; i < src.size(); ++i) src[i] = std::sin(0.37f * static_cast<float>(i));
  for (gguf::GgmlType type : {gguf::GgmlType::kF32, gguf::GgmlType::kF16, gguf::GgmlType::kBF16,
                              gguf::GgmlType::kQ4_0, gguf::GgmlType::kQ4_1, gguf::GgmlType::kQ8_0,
                              gguf::GgmlType::kQ4_K, gguf::GgmlType::kQ6_K}) {
    const int64_t row_bytes = gguf::RowBytes(type, kCols);
    std::vector<uint8_t> q(row_bytes * kRows);
    for (int64_t r = 0; r < kRows; ++r) {
      ASSERT_TRUE(gguf::QuantizeRowRef(type, src.data() + r * kCols, q.data() + r * row_bytes, kCols).ok());
    }
    gguf::TensorInfo t;
    t.name = "w";
    t.type = type;
    t.dims = {kCols, kRows};
    t.data = q.data();
    std::vector<uint16_t> out;
    ASSERT_TRUE(DequantizeRowsToBf16(t, 1, 2, &out).ok());
    ASSERT_EQ(out.size(), static_cast<size_t>(2 * kCols));
    std::vector<float> ref(kCols);
    for (int64_t r = 1; r < 3; ++r) {
      ASSERT_TRUE(gguf::DequantizeRowRef(type, q.data() + r * row_bytes, ref.data(), kCols).ok());
      for (int64_t c = 0; c < kCols; ++c) {
        ASSERT_EQ(out[(r - 1) * kCols + c], F32ToBf16(ref[c])) << static_cast<int>(type) << " " << r << " " << c;
      }
    }
    EXPECT_FALSE(DequantizeRowsToBf16(t, 2, 2, &out).ok());  // past the last row
  }
}

TEST(CudaFactoryTest, FailsCleanlyWithoutCudaOrDevice) {
  if (!CudaBackendBuilt()) {
    EXPECT_EQ(CreateCudaBackend({}).status().code(), absl::StatusCode::kUnimplemented);
    return;
  }
  CudaBackendOptions o;
  o.device = 1 << 20;  // no such device, GPU or not
  EXPECT_FALSE(CreateCudaBackend(o).ok());
  o.device = 0;
  o.cuda_graphs = true;
  o.max_graph_batch = 0;  // checked before the device is touched
  EXPECT_EQ(CreateCudaBackend(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tandem::cuda
