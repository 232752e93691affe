// Prefill on one engine, decode on another: the engine-level contract the workers rely on.
// The prefill engine holds the request's KV after sampling the first token and reports
// progress per chunk; its blocks are copied into blocks allocated on the decode engine, which
// continues from the first token. The tokens must equal a single engine's.
#include <cstring>
#include <limits>
#include <map>
#include <random>

#include "engine/backends/cpu/cpu_backend.h"
#include "engine/engine.h"
#include "fmt/format.h"
#include "gtest/gtest.h"
#include "testing/tiny_model.h"

namespace tandem {
namespace {

class DisaggregationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { file_ = std::move(*gguf::GgufFile::Open(testing::TinyModelPath())).release(); }
  static void TearDownTestSuite() { delete file_; }

  static std::unique_ptr<Engine> MakeEngine(int budget, int64_t blocks = 256, int draft_tokens = 0) {
    EngineOptions o;
    o.speculative.num_draft_tokens = draft_tokens;
    o.speculative.max_decoding = 64;
    o.num_kv_blocks = blocks;
    o.scheduler.token_budget = budget;
    o.eog_token_ids = {2};
    auto e = Engine::Create(*file_, std::move(*cpu::CpuBackend::Create({.threads = 2})), o);
    EXPECT_TRUE(e.ok()) << e.status();
    return std::move(*e);
  }

  static std::vector<GenerateRequest> Workload() {
    std::vector<GenerateRequest> rs;
    const int lens[] = {3, 16, 17, 40, 100, 9, 64, 130};
    for (int i = 0; i < 8; ++i) {
      GenerateRequest r;
      r.id = fmt::format("r{}", i);
      std::mt19937 rng(50 + i);
      for (int t = 0; t < lens[i]; ++t) r.prompt.push_back(3 + static_cast<int32_t>(rng() % 250));
      r.sampling.max_tokens = 20;
      r.sampling.ignore_eos = true;
      if (i % 2 == 0) {
        r.sampling.temperature = 0;
      } else {
        r.sampling.temperature = 3.0f;  // seeded sampling must continue seamlessly too
        r.sampling.seed = 100 + i;
      }
      if (i % 4 >= 2) {
        // The penalties' counts and the bias must survive the hand-off and a resume too.
        r.sampling.presence_penalty = 0.8f;
        r.sampling.frequency_penalty = 1.5f;
        r.sampling.repetition_penalty = 1.3f;
        r.sampling.min_p = 0.02f;
        r.sampling.logit_bias = {{r.prompt[0], -5.0f}, {7, 1.5f}};
      }
      if (i == 5 || i == 6) {
        // min_tokens holds back an end-of-generation token that a bias puts on top, from the
        // first token (sampled by the prefill side) to the 19th (a resume after 19 counts them).
        r.sampling.ignore_eos = false;
        r.sampling.min_tokens = 19;
        r.sampling.logit_bias = {{2, 100.0f}};
      }
      rs.push_back(r);
    }
    return rs;
  }

  static std::map<std::string, std::vector<int32_t>> RunAll(Engine& e, const std::vector<GenerateRequest>& rs) {
    for (const auto& r : rs) EXPECT_TRUE(e.Add(r).ok());
    std::map<std::string, std::vector<int32_t>> out;
    while (e.HasWork()) {
      auto step = e.Step();
      EXPECT_TRUE(step.ok());
      for (const auto& o : *step) out[o.id].insert(out[o.id].end(), o.new_tokens.begin(), o.new_tokens.end());
    }
    return out;
  }

  static void CopyBlock(Engine& from, int32_t src, Engine& to, int32_t dst) {
    const int64_t bytes = from.kv_cache().layout().bytes_per_block();
    std::memcpy(to.kv_cache().host_base() + dst * bytes, from.kv_cache().host_base() + src * bytes, bytes);
  }

  static inline gguf::GgufFile* file_ = nullptr;
};

TEST_F(DisaggregationTest, PrefillHereDecodeThereGivesTheSingleEngineTokens) {
  const auto requests = Workload();
  auto single = MakeEngine(512);
  const auto expected = RunAll(*single, requests);

  for (int prefill_budget : {16, 64, 512}) {
    auto prefill = MakeEngine(prefill_budget);
    // Speculative decoding on the decode side (not with budget 16) changes nothing either.
    const int draft_tokens = prefill_budget == 16 ? 0 : 4;
    auto decode = MakeEngine(512, 256, draft_tokens);
    struct Flow {
      std::vector<int32_t> dst;  // decode-side blocks
      int32_t sent = 0;          // logical blocks already copied
    };
    std::map<std::string, Flow> flows;
    for (auto r : requests) {
      auto blocks = decode->AllocateKvBlocks(static_cast<int32_t>(r.prompt.size()));
      ASSERT_TRUE(blocks.ok());
      flows[r.id].dst = *blocks;
      r.hold_kv = true;
      r.report_progress = true;
      r.sampling.max_tokens = 1;
      ASSERT_TRUE(prefill->Add(r).ok());
    }
    std::map<std::string, std::vector<int32_t>> got;
    const int bs = prefill->block_size();
    while (prefill->HasWork()) {
      auto step = prefill->Step();
      ASSERT_TRUE(step.ok());
      for (const auto& o : *step) {
        Flow& f = flows[o.id];
        const auto table = prefill->BlockTable(o.id);
        const bool done = o.finish != FinishReason::kNone;
        // Full blocks as chunks finish; the partial last block only at the end.
        const int32_t ready = done ? static_cast<int32_t>((o.prompt_tokens + bs - 1) / bs) : o.num_computed / bs;
        for (; f.sent < ready; ++f.sent) CopyBlock(*prefill, table[f.sent], *decode, f.dst[f.sent]);
        if (!done) continue;
        ASSERT_EQ(o.new_tokens.size(), 1u);
        got[o.id] = o.new_tokens;
        EXPECT_TRUE(prefill->ReleaseHeldKv(o.id));
        auto r = *std::find_if(requests.begin(), requests.end(), [&](const auto& x) { return x.id == o.id; });
        ASSERT_TRUE(decode->AddPrefilled(r, f.dst, o.new_tokens[0], o.rng_draws).ok());
      }
    }
    EXPECT_EQ(prefill->Load().reserved_blocks, 0);
    EXPECT_EQ(prefill->block_manager().num_in_use(), 0);
    while (decode->HasWork()) {
      auto step = decode->Step();
      ASSERT_TRUE(step.ok());
      for (const auto& o : *step) got[o.id].insert(got[o.id].end(), o.new_tokens.begin(), o.new_tokens.end());
    }
    for (const auto& [id, tokens] : expected) EXPECT_EQ(got[id], tokens) << "budget " << prefill_budget << ", " << id;
    EXPECT_EQ(decode->counters().accepted_draft_tokens > 0, draft_tokens > 0);
    EXPECT_EQ(decode->block_manager().num_in_use(), 0);
    EXPECT_EQ(decode->Load().reserved_blocks, 0);
  }
}

TEST_F(DisaggregationTest, ReservationsAreAccountedAndRefusedWhenTheCacheIsFull) {
  auto e = MakeEngine(64, /*blocks=*/10);
  auto a = e->AllocateKvBlocks(100);  // 7 blocks
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(e->Load().reserved_blocks, 7);
  EXPECT_EQ(e->Load().free_blocks, 3);
  EXPECT_EQ(e->AllocateKvBlocks(64).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(e->AllocateKvBlocks(16, /*headroom=*/3).status().code(), absl::StatusCode::kResourceExhausted);
  e->FreeKvBlocks(*a);
  EXPECT_EQ(e->Load().reserved_blocks, 0);
  EXPECT_EQ(e->Load().free_blocks, 10);
}

TEST_F(DisaggregationTest, AddPrefilledRejectsBlocksItDoesNotOwnAndTooFewBlocks) {
  auto e = MakeEngine(64);
  GenerateRequest r;
  r.id = "x";
  r.prompt = std::vector<int32_t>(40, 5);
  r.sampling.max_tokens = 5;
  EXPECT_EQ(e->AddPrefilled(r, {0, 1, 2}, 7, 0).code(), absl::StatusCode::kInvalidArgument);  // not allocated
  auto blocks = e->AllocateKvBlocks(16);
  ASSERT_TRUE(blocks.ok());
  EXPECT_EQ(e->AddPrefilled(r, *blocks, 7, 0).code(), absl::StatusCode::kInvalidArgument);  // 1 block for 40 tokens
  e->FreeKvBlocks(*blocks);
  auto enough = e->AllocateKvBlocks(40);
  r.sampling.max_tokens = 1;
  EXPECT_EQ(e->AddPrefilled(r, *enough, 7, 0).code(), absl::StatusCode::kInvalidArgument);  // nothing to decode
  r.sampling.max_tokens = 5;
  EXPECT_TRUE(e->AddPrefilled(r, *enough, 7, 0).ok());
  EXPECT_FALSE(e->AddPrefilled(r, *enough, 7, 0).ok());  // duplicate id
}

TEST_F(DisaggregationTest, CancellingAHeldRequestFreesItsKv) {
  auto e = MakeEngine(64);
  GenerateRequest r;
  r.id = "held";
  r.prompt = std::vector<int32_t>(50, 9);
  r.sampling.max_tokens = 1;
  r.hold_kv = true;
  ASSERT_TRUE(e->Add(r).ok());
  while (e->HasWork()) ASSERT_TRUE(e->Step().ok());
  EXPECT_EQ(e->BlockTable("held").size(), 4u);
  EXPECT_GT(e->block_manager().num_in_use(), 0);
  EXPECT_TRUE(e->Cancel("held"));
  EXPECT_EQ(e->block_manager().num_in_use(), 0);
  EXPECT_TRUE(e->BlockTable("held").empty());
}


// What a migrated request relies on (router/request_flow.h "migrate"): a second engine given the
// prompt plus the first k generated tokens, max_tokens less k and the sampler's draws so far,
// generates exactly the rest of an uninterrupted run, greedy and seeded alike.
TEST_F(DisaggregationTest, ResumingFromTheTokensSoFarOnAnotherEngineGivesTheSameRest) {
  const auto requests = Workload();
  auto single = MakeEngine(512);
  std::map<std::string, std::vector<int32_t>> expected;
  std::map<std::string, std::vector<int32_t>> draws_after;  // draws after each token
  for (const auto& r : requests) ASSERT_TRUE(single->Add(r).ok());
  while (single->HasWork()) {
    auto step = single->Step();
    ASSERT_TRUE(step.ok());
    for (const auto& o : *step) {
      for (int32_t t : o.new_tokens) {
        expected[o.id].push_back(t);
        draws_after[o.id].push_back(o.rng_draws);
      }
    }
  }
  for (int k : {1, 7, 19}) {
    auto resumed = MakeEngine(64);
    for (auto r : requests) {
      const auto& full = expected[r.id];
      r.prompt.insert(r.prompt.end(), full.begin(), full.begin() + k);
      r.sampling.max_tokens -= k;
      r.sampling.output_in_prompt = k;  // the penalties count them as output
      r.rng_draws = draws_after[r.id][k - 1];
      ASSERT_TRUE(resumed->Add(r).ok());
    }
    std::map<std::string, std::vector<int32_t>> rest;
    while (resumed->HasWork()) {
      auto step = resumed->Step();
      ASSERT_TRUE(step.ok());
      for (const auto& o : *step) rest[o.id].insert(rest[o.id].end(), o.new_tokens.begin(), o.new_tokens.end());
    }
    for (const auto& r : requests) {
      const auto& full = expected[r.id];
      EXPECT_EQ(rest[r.id], std::vector<int32_t>(full.begin() + k, full.end())) << "k=" << k << " " << r.id;
    }
  }
}

// The workload's logit modifiers are not idle: without them its requests generate other tokens.
TEST_F(DisaggregationTest, TheWorkloadsPenaltiesChangeWhatIsGenerated) {
  const auto requests = Workload();
  auto plain_requests = requests;
  for (auto& r : plain_requests) {
    r.sampling.presence_penalty = r.sampling.frequency_penalty = 0;
    r.sampling.repetition_penalty = 1;
    r.sampling.min_p = 0;
    r.sampling.logit_bias.clear();
  }
  auto with = MakeEngine(512);
  auto without = MakeEngine(512);
  const auto a = RunAll(*with, requests);
  const auto b = RunAll(*without, plain_requests);
  for (const auto& r : requests) {
    if (r.sampling.modifies_logits()) {
      EXPECT_NE(a.at(r.id), b.at(r.id)) << r.id;
    } else {
      EXPECT_EQ(a.at(r.id), b.at(r.id)) << r.id;
    }
  }
}

// Log-probabilities are those of the model's own distribution: a log-softmax of the logits a
// teacher-forced pass gives at each position, before the logit modifiers and temperature
// (the workload has both).
TEST_F(DisaggregationTest, LogprobsAreALogSoftmaxOfTheModelsLogits) {
  auto requests = Workload();
  for (auto& r : requests) r.sampling.logprobs = 3;
  auto e = MakeEngine(512);
  for (const auto& r : requests) ASSERT_TRUE(e->Add(r).ok());
  std::map<std::string, std::vector<int32_t>> tokens;
  std::map<std::string, std::vector<TokenLogprob>> lps;
  while (e->HasWork()) {
    auto step = e->Step();
    ASSERT_TRUE(step.ok());
    for (const auto& o : *step) {
      ASSERT_EQ(o.logprobs.size(), o.new_tokens.size());
      tokens[o.id].insert(tokens[o.id].end(), o.new_tokens.begin(), o.new_tokens.end());
      lps[o.id].insert(lps[o.id].end(), o.logprobs.begin(), o.logprobs.end());
    }
  }
  auto scorer = MakeEngine(512);
  const int vocab = scorer->model_config().vocab_size;
  for (const auto& r : requests) {
    std::vector<int32_t> all = r.prompt;
    all.insert(all.end(), tokens[r.id].begin(), tokens[r.id].end() - 1);
    auto logits = scorer->ScoreTokens(all);
    ASSERT_TRUE(logits.ok());
    for (size_t i = 0; i < tokens[r.id].size(); ++i) {
      const float* row = logits->data() + (r.prompt.size() - 1 + i) * vocab;
      double z = 0;
      for (int v = 0; v < vocab; ++v) z += std::exp(static_cast<double>(row[v]));
      const double expect = row[tokens[r.id][i]] - std::log(z);
      EXPECT_NEAR(lps[r.id][i].logprob, expect, 2e-3) << r.id << " token " << i;
      ASSERT_EQ(lps[r.id][i].top.size(), 3u);
      const int32_t best = ArgMax(std::span<const float>(row, vocab));
      EXPECT_EQ(lps[r.id][i].top[0].first, best) << r.id << " token " << i;
      EXPECT_NEAR(lps[r.id][i].top[0].second, row[best] - std::log(z), 2e-3);
      EXPECT_GE(lps[r.id][i].top[0].second, lps[r.id][i].top[1].second);
      if (r.sampling.temperature == 0 && !r.sampling.modifies_logits()) {
        EXPECT_EQ(lps[r.id][i].top[0].first, tokens[r.id][i]) << "greedy picks the most likely";
      }
    }
  }
}

TEST_F(DisaggregationTest, OutputInThePromptMustLeaveAPrompt) {
  auto e = MakeEngine(64);
  GenerateRequest r;
  r.id = "x";
  r.prompt = {5, 6, 7};
  r.sampling.max_tokens = 5;
  r.sampling.output_in_prompt = 3;
  EXPECT_EQ(e->Add(r).code(), absl::StatusCode::kInvalidArgument);
  r.sampling.output_in_prompt = 2;
  EXPECT_TRUE(e->Add(r).ok());
}

TEST_F(DisaggregationTest, ASamplerPositionThatCannotBeIsRefused) {
  // A peer's rng_draws is trusted only within one draw per context token (skipping 2^64 draws
  // would hold the engine thread for ever).
  auto e = MakeEngine(64);
  GenerateRequest r;
  r.id = "x";
  r.prompt = std::vector<int32_t>(40, 5);
  r.sampling.max_tokens = 5;
  for (int32_t bad : {-1, std::numeric_limits<int32_t>::min(), e->max_model_len() + 1}) {
    r.rng_draws = bad;
    EXPECT_EQ(e->Add(r).code(), absl::StatusCode::kInvalidArgument) << bad;
    auto blocks = e->AllocateKvBlocks(40);
    ASSERT_TRUE(blocks.ok());
    EXPECT_EQ(e->AddPrefilled(r, *blocks, 7, bad).code(), absl::StatusCode::kInvalidArgument) << bad;
    e->FreeKvBlocks(*blocks);
  }
  r.rng_draws = 12;
  EXPECT_TRUE(e->Add(r).ok());
}

}  // namespace
}  // namespace tandem
