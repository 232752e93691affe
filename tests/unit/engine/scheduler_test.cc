// Scheduler policy without a model: token budget, decode-first ordering (Sarathi-Serve),
// FCFS and priority, preemption by recompute, batch-size limit, prefix hits at admission.
#include "engine/scheduler.h"

#include <memory>
#include <numeric>

#include "gtest/gtest.h"

namespace tandem {
namespace {

class SchedulerTest : public ::testing::Test {
 protected:
  void Init(int64_t blocks, int budget, int max_seqs = 64, bool prefix = false) {
    BlockManagerOptions bo;
    bo.num_blocks = blocks;
    bo.block_size = 16;
    bo.enable_prefix_cache = prefix;
    blocks_ = std::make_unique<BlockManager>(bo);
    SchedulerOptions so;
    so.token_budget = budget;
    so.max_num_seqs = max_seqs;
    scheduler_ = std::make_unique<Scheduler>(so, *blocks_);
  }

  Sequence* Add(int prompt_len, int priority = 0, int32_t first_token = 10) {
    std::vector<int32_t> prompt(prompt_len);
    std::iota(prompt.begin(), prompt.end(), first_token);
    seqs_.push_back(std::make_unique<Sequence>("s" + std::to_string(seqs_.size()), prompt, SamplingParams{},
                                               priority, arrival_++, 1));
    scheduler_->Add(seqs_.back().get());
    return seqs_.back().get();
  }

  // Pretends the model ran the plan: advances num_computed and samples token 7 where due.
  SchedulerOutput Step() {
    SchedulerOutput out = scheduler_->Schedule();
    int32_t total = 0;
    for (const auto& c : out.chunks) {
      EXPECT_GE(c.seq->block_table.size() * 16, static_cast<size_t>(c.seq->num_computed + c.num_tokens));
      c.seq->num_computed += c.num_tokens;
      scheduler_->OnComputed(c.seq);
      if (c.samples) c.seq->tokens.push_back(7);
      total += c.num_tokens;
    }
    EXPECT_EQ(total, out.num_tokens);
    EXPECT_LE(total, scheduler_->options().token_budget);
    return out;
  }

  static int32_t TokensFor(const SchedulerOutput& out, const Sequence* s) {
    for (const auto& c : out.chunks) {
      if (c.seq == s) return c.num_tokens;
    }
    return 0;
  }

  std::unique_ptr<BlockManager> blocks_;
  std::unique_ptr<Scheduler> scheduler_;
  std::vector<std::unique_ptr<Sequence>> seqs_;
  uint64_t arrival_ = 0;
};

TEST_F(SchedulerTest, ChunksPrefillsUnderTheTokenBudgetInArrivalOrder) {
  Init(100, 64);
  Sequence* a = Add(100);
  Sequence* b = Add(50);
  Sequence* c = Add(30);
  auto s1 = Step();
  EXPECT_EQ(TokensFor(s1, a), 64);  // the first arrival takes the whole budget
  EXPECT_EQ(TokensFor(s1, b), 0);
  auto s2 = Step();
  EXPECT_EQ(TokensFor(s2, a), 36);  // finishes its prompt (and samples)...
  EXPECT_EQ(TokensFor(s2, b), 28);  // ...and the next one starts in the same iteration
  EXPECT_EQ(s2.num_tokens, 64);
  auto s3 = Step();
  EXPECT_EQ(TokensFor(s3, a), 1);  // decoding now: one token, first
  EXPECT_EQ(TokensFor(s3, b), 22);
  EXPECT_EQ(TokensFor(s3, c), 30);
  EXPECT_EQ(s3.chunks[0].seq, a);
  EXPECT_EQ(s3.num_decode_tokens, 1);
}

TEST_F(SchedulerTest, DecodesAreScheduledBeforeAnyPrefillChunk) {
  Init(200, 8);
  std::vector<Sequence*> decoding;
  for (int i = 0; i < 5; ++i) decoding.push_back(Add(4));
  Step();  // 5 prompts of 4 tokens do not fit a budget of 8: two and a half of them
  while (std::any_of(decoding.begin(), decoding.end(), [](Sequence* s) { return s->num_uncomputed() != 1; })) Step();
  Sequence* big = Add(100);
  for (int round = 0; round < 5; ++round) {
    auto out = Step();
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(out.chunks[i].seq, decoding[i]) << "decodes come first, oldest first";
      EXPECT_EQ(out.chunks[i].num_tokens, 1);
    }
    EXPECT_EQ(TokensFor(out, big), 3);  // the prefill gets what is left: 8 - 5
  }
}

TEST_F(SchedulerTest, HigherPriorityIsAdmittedFirstAndEqualPrioritiesAreFcfs) {
  Init(100, 16, /*max_seqs=*/1);
  Sequence* low = Add(8, /*priority=*/5);
  Sequence* first = Add(8, 0);
  Sequence* second = Add(8, 0);
  auto out = Step();
  ASSERT_EQ(out.chunks.size(), 1u);
  EXPECT_EQ(out.chunks[0].seq, first);
  scheduler_->Remove(first);
  out = Step();
  EXPECT_EQ(out.chunks[0].seq, second);
  scheduler_->Remove(second);
  out = Step();
  EXPECT_EQ(out.chunks[0].seq, low);
}

TEST_F(SchedulerTest, BatchSizeLimitHoldsBackNewSequences) {
  Init(100, 512, /*max_seqs=*/3);
  for (int i = 0; i < 5; ++i) Add(10);
  auto out = Step();
  EXPECT_EQ(out.chunks.size(), 3u);
  EXPECT_EQ(scheduler_->num_waiting(), 2u);
}

TEST_F(SchedulerTest, RunningOutOfBlocksPreemptsTheLatestArrivalWhichResumesFirst) {
  Init(/*blocks=*/6, 512);
  Sequence* old = Add(40);    // 3 blocks
  Sequence* young = Add(40);  // 3 blocks: the pool is full
  Step();
  ASSERT_TRUE(old->running && young->running);
  Sequence* newer = Add(5);  // cannot be admitted while both run
  // Grow `old` to a block boundary: its next token needs a 4th block.
  while (old->tokens.size() < 49) old->tokens.push_back(8);
  old->num_computed = 48;
  auto out = Step();
  ASSERT_EQ(out.preempted.size(), 1u);
  EXPECT_EQ(out.preempted[0], young);
  EXPECT_FALSE(young->running);
  EXPECT_EQ(young->num_computed, 0);  // recompute from scratch
  EXPECT_TRUE(young->block_table.empty());
  EXPECT_EQ(young->num_preemptions, 1);
  EXPECT_EQ(scheduler_->waiting().front(), young) << "a preempted sequence goes ahead of newer arrivals";
  EXPECT_EQ(TokensFor(out, old), 1);
  EXPECT_EQ(TokensFor(out, newer), 0);
  EXPECT_TRUE(blocks_->CheckInvariants());
}

TEST_F(SchedulerTest, ASequenceThatCannotGrowPreemptsItselfWhenNothingElseRuns) {
  Init(/*blocks=*/2, 512);
  Sequence* s = Add(32);  // exactly 2 blocks
  Step();
  s->num_computed = 32;
  s->tokens.push_back(9);  // needs a third block
  auto out = Step();
  ASSERT_EQ(out.preempted.size(), 1u);
  EXPECT_EQ(out.preempted[0], s);
  EXPECT_TRUE(out.chunks.empty());
  EXPECT_EQ(blocks_->num_in_use(), 0);
}

TEST_F(SchedulerTest, AdmissionTakesPrefixCacheHitsButAlwaysComputesTheLastToken) {
  Init(100, 512, 64, /*prefix=*/true);
  Sequence* a = Add(48);  // 3 full blocks
  Step();
  Sequence* b = Add(48);  // same tokens
  auto out = Step();
  // Two blocks are reused; the third is recomputed so that the last prompt token runs.
  EXPECT_EQ(b->num_prefix_hit_tokens, 32);
  EXPECT_EQ(TokensFor(out, b), 16);
  EXPECT_EQ(b->block_table[0], a->block_table[0]);
  EXPECT_EQ(b->block_table[1], a->block_table[1]);
  EXPECT_NE(b->block_table[2], a->block_table[2]);
  Sequence* c = Add(40, 0, /*first_token=*/500);  // different tokens: no hit
  Step();
  EXPECT_EQ(c->num_prefix_hit_tokens, 0);
}

TEST_F(SchedulerTest, RemoveReleasesEveryBlock) {
  Init(50, 64);
  Sequence* a = Add(100);
  Step();
  EXPECT_GT(blocks_->num_in_use(), 0);
  scheduler_->Remove(a);
  EXPECT_EQ(blocks_->num_in_use(), 0);
  EXPECT_EQ(scheduler_->num_running(), 0u);
  EXPECT_TRUE(blocks_->CheckInvariants());
}

}  // namespace
}  // namespace tandem

namespace tandem {
namespace {

// The iteration shape the cost model (src/sim) prices: tokens, sampled rows, query-key pairs
// (n*c + n*(n+1)/2 for a chunk of n after c) and KV tokens read (c + n), per chunk.
TEST(DescribeIteration, CountsTheWorkOfEveryChunk) {
  BlockManagerOptions bo;
  bo.num_blocks = 100;
  bo.block_size = 16;
  bo.enable_prefix_cache = false;
  BlockManager blocks(bo);
  SchedulerOptions so;
  so.token_budget = 64;
  Scheduler scheduler(so, blocks);
  Sequence a("a", std::vector<int32_t>(100, 1), SamplingParams{}, 0, 0, 1);
  Sequence b("b", std::vector<int32_t>(50, 1), SamplingParams{}, 0, 1, 1);
  scheduler.Add(&a);
  scheduler.Add(&b);
  auto run = [&] {
    SchedulerOutput plan = scheduler.Schedule();
    const IterationShape shape = DescribeIteration(plan);
    for (const auto& c : plan.chunks) {
      c.seq->num_computed += c.num_tokens;
      if (c.samples) c.seq->tokens.push_back(7);
    }
    return shape;
  };
  const IterationShape first = run();  // a: 64 tokens from 0
  EXPECT_EQ(first.tokens, 64);
  EXPECT_EQ(first.sampled, 0);
  EXPECT_EQ(first.attention_pairs, 64 * 65 / 2);
  EXPECT_EQ(first.kv_read_tokens, 64);
  EXPECT_EQ(first.sequences, 1);
  const IterationShape second = run();  // a: 36 after 64 (samples), b: 28 from 0
  EXPECT_EQ(second.tokens, 64);
  EXPECT_EQ(second.sampled, 1);
  EXPECT_EQ(second.attention_pairs, (36 * 64 + 36 * 37 / 2) + 28 * 29 / 2);
  EXPECT_EQ(second.kv_read_tokens, 100 + 28);
  EXPECT_EQ(second.sequences, 2);
  const IterationShape third = run();  // a decodes one token after 100; b: 22 after 28 (samples)
  EXPECT_EQ(third.tokens, 23);
  EXPECT_EQ(third.sampled, 2);
  EXPECT_EQ(third.attention_pairs, 101 + (22 * 28 + 22 * 23 / 2));
  EXPECT_EQ(third.kv_read_tokens, 101 + 50);
}

}  // namespace
}  // namespace tandem
