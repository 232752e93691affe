#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tandem/kv_transport.h"
#include "unit/transfer/transfer_test_util.h"

namespace tandem {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(KvLayoutInfoTest, DescribesEveryField) {
  EXPECT_EQ(transfer::testing::SmolLm2Layout().Describe(),
            "model=smollm2-135m-instruct-q4_1 layers=30 kv_heads=3 head_dim=64 block=16 "
            "dtype=f16 format=cpu/kt-v1");
}

TEST(KvLayoutInfoTest, EqualLayoutsHaveNoMismatch) {
  const KvLayoutInfo a = transfer::testing::SmolLm2Layout();
  EXPECT_TRUE(a == transfer::testing::SmolLm2Layout());
  EXPECT_EQ(a.Mismatch(transfer::testing::SmolLm2Layout()), "");
}

TEST(KvLayoutInfoTest, MismatchNamesOnlyTheFieldsThatDiffer) {
  const KvLayoutInfo a = transfer::testing::SmolLm2Layout();
  KvLayoutInfo b = a;
  b.layout.block_size = 32;
  b.layout.dtype = DType::kBF16;
  EXPECT_FALSE(a == b);
  const std::string m = a.Mismatch(b);
  EXPECT_THAT(m, HasSubstr("block 16 vs 32"));
  EXPECT_THAT(m, HasSubstr("dtype f16 vs bf16"));
  EXPECT_THAT(m, Not(HasSubstr("layers")));
  EXPECT_THAT(m, Not(HasSubstr("model")));

  KvLayoutInfo c = a;
  c.model_id = "other";
  c.block_format = "cuda/x";
  c.layout.num_kv_heads = 4;
  EXPECT_THAT(a.Mismatch(c), HasSubstr("model smollm2-135m-instruct-q4_1 vs other"));
  EXPECT_THAT(a.Mismatch(c), HasSubstr("format cpu/kt-v1 vs cuda/x"));
  EXPECT_THAT(a.Mismatch(c), HasSubstr("kv_heads 3 vs 4"));
}

}  // namespace
}  // namespace tandem
