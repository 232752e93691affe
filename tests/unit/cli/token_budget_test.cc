// --token-budget auto: the engine measures itself at start-up and takes the largest budget
// whose predicted iteration meets --budget-itl-ms; bad values are usage errors.
#include "cli/common_flags.h"
#include "gguf/gguf_file.h"
#include "gtest/gtest.h"
#include "testing/tiny_model.h"

namespace tandem::cli {
namespace {

TEST(TokenBudget, AutoFollowsTheItlTarget) {
  auto file = gguf::GgufFile::Open(testing::TinyModelPath());
  ASSERT_TRUE(file.ok()) << file.status();
  EngineFlags flags;
  flags.threads = 1;
  flags.token_budget = "auto";
  flags.budget_itl_ms = 1e7;  // everything fits: the largest candidate
  auto loose = MakeEngine(flags, **file, {});
  ASSERT_TRUE(loose.ok()) << loose.status();
  EXPECT_EQ((*loose)->scheduler().options().token_budget, 4096);
  flags.budget_itl_ms = 1e-6;  // nothing fits: the smallest
  auto tight = MakeEngine(flags, **file, {});
  ASSERT_TRUE(tight.ok()) << tight.status();
  EXPECT_EQ((*tight)->scheduler().options().token_budget, 16);
}

TEST(TokenBudget, ACountIsTakenAsIsAndNonsenseIsRefused) {
  EngineFlags flags;
  flags.token_budget = "96";
  EXPECT_TRUE(flags.Check().ok());
  EXPECT_EQ(flags.ToEngineOptions().scheduler.token_budget, 96);
  for (const char* bad : {"0", "-5", "lots", ""}) {
    flags.token_budget = bad;
    EXPECT_EQ(flags.Check().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  flags.token_budget = "auto";
  flags.budget_itl_ms = 0;
  EXPECT_FALSE(flags.Check().ok());
}

}  // namespace
}  // namespace tandem::cli
