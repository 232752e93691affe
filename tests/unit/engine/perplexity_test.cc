// `tandem perplexity`'s computation (engine/perplexity.h) on the tiny random model: which tokens
// are scored, how chunks are cut, what BOS does, and the errors a user gets.
#include "engine/perplexity.h"

#include <cmath>
#include <random>

#include "engine/backends/cpu/cpu_backend.h"
#include "gtest/gtest.h"
#include "testing/tiny_model.h"

namespace tandem {
namespace {

class PerplexityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { file_ = std::move(*gguf::GgufFile::Open(testing::TinyModelPath())).release(); }
  static void TearDownTestSuite() { delete file_; }

  void SetUp() override {
    auto backend = cpu::CpuBackend::Create({.threads = 2});
    ASSERT_TRUE(backend.ok());
    EngineOptions options;
    options.num_kv_blocks = 64;
    options.max_model_len = 256;
    auto engine = Engine::Create(*file_, std::move(*backend), options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }

  static std::vector<int32_t> Stream(size_t len, uint32_t seed = 5) {
    std::mt19937 rng(seed);
    std::vector<int32_t> t(len);
    for (auto& x : t) x = 3 + static_cast<int32_t>(rng() % 250);
    return t;
  }

  PerplexityResult Run(const std::vector<int32_t>& tokens, PerplexityOptions options) {
    auto r = ComputePerplexity(*engine_, tokens, options);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : PerplexityResult{};
  }

  static gguf::GgufFile* file_;
  std::unique_ptr<Engine> engine_;
};
gguf::GgufFile* PerplexityTest::file_ = nullptr;

TEST(TokenLogProbTest, IsTheLogSoftmaxOfTheTarget) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f, -50.0f};
  const double sum = std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + std::exp(-50.0);
  for (int t = 0; t < 4; ++t) EXPECT_NEAR(TokenLogProb(logits, t), logits[t] - std::log(sum), 1e-12);
  // Large logits do not overflow: the maximum is subtracted first.
  EXPECT_NEAR(TokenLogProb(std::vector<float>{1000.0f, 1000.0f}, 0), std::log(0.5), 1e-12);
}

// Each chunk scores the predictions of its second half: ctx - ctx/2 - 1 tokens. A partial last
// chunk is dropped, as llama-perplexity drops it.
TEST_F(PerplexityTest, ScoresTheSecondHalfOfEveryWholeChunk) {
  const auto tokens = Stream(3 * 32 + 20);
  const PerplexityResult r = Run(tokens, {.ctx = 32});
  EXPECT_EQ(r.chunks, 3);
  EXPECT_EQ(r.scored_tokens, 3 * 15);
  ASSERT_EQ(r.running_ppl.size(), 3u);
  EXPECT_DOUBLE_EQ(r.running_ppl.back(), r.ppl);
  EXPECT_GT(r.ppl, 1.0);
  EXPECT_GT(r.ppl_error, 0.0);
  const PerplexityResult whole = Run(std::vector<int32_t>(tokens.begin(), tokens.begin() + 96), {.ctx = 32});
  EXPECT_DOUBLE_EQ(whole.ppl, r.ppl);

  // The first half of a chunk is context only: changing its tokens changes the scores, but
  // changing a token that is scored changes them too, and changing the token just after the
  // last whole chunk does not.
  auto after = tokens;
  after[96] = after[96] == 3 ? 4 : 3;
  EXPECT_DOUBLE_EQ(Run(after, {.ctx = 32}).ppl, r.ppl);
  auto scored = tokens;
  scored[32 + 20] = scored[32 + 20] == 3 ? 4 : 3;
  EXPECT_NE(Run(scored, {.ctx = 32}).ppl, r.ppl);
}

// Chunks are independent: chunk 2 sees nothing of chunk 1, and --chunks stops early with the same
// running values.
TEST_F(PerplexityTest, ChunksAreIndependentAndCanBeLimited) {
  const auto tokens = Stream(4 * 32);
  const PerplexityResult all = Run(tokens, {.ctx = 32});
  const PerplexityResult two = Run(tokens, {.ctx = 32, .max_chunks = 2});
  ASSERT_EQ(two.running_ppl.size(), 2u);
  EXPECT_DOUBLE_EQ(two.running_ppl[0], all.running_ppl[0]);
  EXPECT_DOUBLE_EQ(two.running_ppl[1], all.running_ppl[1]);
  auto changed_first = tokens;
  for (int i = 0; i < 32; ++i) changed_first[i] = 7;
  const PerplexityResult c = Run(changed_first, {.ctx = 32});
  // Chunk 1's value moves, later chunks' contributions do not: the log-likelihood summed over
  // chunks 2..4 is the same.
  auto later_nll = [](const PerplexityResult& r) {
    return std::log(r.running_ppl[3]) * 4 * 15 - std::log(r.running_ppl[0]) * 15;
  };
  EXPECT_NE(c.running_ppl[0], all.running_ppl[0]);
  EXPECT_NEAR(later_nll(c), later_nll(all), 1e-9);
}

// With a BOS token, each chunk's first token is replaced by it (llama.cpp: the model adds BOS).
TEST_F(PerplexityTest, BosReplacesEachChunksFirstToken) {
  auto tokens = Stream(3 * 32);
  const PerplexityResult with_bos = Run(tokens, {.ctx = 32, .bos = 1});
  EXPECT_NE(with_bos.ppl, Run(tokens, {.ctx = 32}).ppl);
  for (int c = 0; c < 3; ++c) tokens[c * 32] = 1;
  EXPECT_DOUBLE_EQ(Run(tokens, {.ctx = 32}).ppl, with_bos.ppl);
}

TEST_F(PerplexityTest, RefusesTextsShorterThanTwoChunksAndContextsTheModelCannotHold) {
  auto short_text = ComputePerplexity(*engine_, Stream(63), {.ctx = 32});
  EXPECT_EQ(short_text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(short_text.status().message().find("needs at least 64"), std::string::npos) << short_text.status();
  EXPECT_EQ(ComputePerplexity(*engine_, Stream(1024), {.ctx = 512}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ComputePerplexity(*engine_, Stream(64), {.ctx = 2}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->block_manager().num_in_use(), 0);
}

}  // namespace
}  // namespace tandem
