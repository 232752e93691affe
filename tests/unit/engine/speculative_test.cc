// Speculative decoding (engine/speculative.h): prompt-lookup drafts, and an engine that verifies
// them gives exactly the tokens, log-probabilities and sampler positions of one that does not,
// greedy or seeded, under every scheduling mode, and keeps some of the drafts.
#include "engine/speculative.h"

#include <map>
#include <random>

#include "engine/backends/cpu/cpu_backend.h"
#include "engine/engine.h"
#include "fmt/format.h"
#include "gtest/gtest.h"
#include "testing/tiny_model.h"

namespace tandem {
namespace {

std::vector<int32_t> Propose(std::vector<int32_t> tokens, int max_tokens, int min_n = 1, int max_n = 3) {
  std::vector<int32_t> draft;
  NgramProposer(min_n, max_n).Propose(tokens, max_tokens, &draft);
  return draft;
}

TEST(NgramProposerTest, ProposesWhatFollowedTheLatestEarlierMatchLongestFirst) {
  // "7 8 9" occurred before, followed by 10 11 12: the 3-gram wins over the later 1-gram "9 5".
  EXPECT_EQ(Propose({1, 7, 8, 9, 10, 11, 12, 9, 5, 3, 7, 8, 9}, 3), (std::vector<int32_t>{10, 11, 12}));
  EXPECT_EQ(Propose({1, 7, 8, 9, 10, 11, 12, 9, 5, 3, 7, 8, 9}, 2), (std::vector<int32_t>{10, 11}));
  // Only a 1-gram matches: the latest earlier occurrence of 9 is followed by 5 3.
  EXPECT_EQ(Propose({9, 4, 4, 9, 5, 3, 9}, 2), (std::vector<int32_t>{5, 3}));
  // The continuation stops at the sequence's end.
  EXPECT_EQ(Propose({4, 6, 4}, 5), (std::vector<int32_t>{6, 4}));
  // A run of one token: the latest match has one token after it, an earlier one has enough.
  EXPECT_EQ(Propose({1, 5, 5, 5, 5, 5, 5}, 3), (std::vector<int32_t>{5, 5, 5}));
  // The latest match with enough tokens after it wins over an earlier one.
  EXPECT_EQ(Propose({3, 8, 1, 2, 3, 9, 4, 4, 3}, 2), (std::vector<int32_t>{9, 4}));
  // Nothing to propose: no earlier occurrence, a match shorter than min_ngram, no room, or a
  // sequence of one token.
  EXPECT_TRUE(Propose({1, 2, 3, 4}, 4).empty());
  EXPECT_TRUE(Propose({9, 4, 4, 9, 5, 3, 9}, 2, /*min_n=*/2).empty());
  EXPECT_TRUE(Propose({4, 6, 4}, 0).empty());
  EXPECT_TRUE(Propose({4}, 3).empty());
}

TEST(DraftLengthTest, DraftsGrowWhileKeptAndFadeWhileMissedThenTryAgain) {
  DraftRecord r;
  EXPECT_EQ(DraftLength(r, 8, 0.25), 2);  // prior 0.5: 0.5 and 0.25 pay for themselves
  EXPECT_EQ(DraftLength(r, 8, 0.0), 8);   // cost 0: always the most
  EXPECT_EQ(DraftLength(r, 1, 0.25), 1);
  for (int i = 0; i < 10; ++i) r.Verified(4, 4);  // copying: every draft kept
  EXPECT_EQ(DraftLength(r, 8, 0.25), 8);
  for (int i = 0; i < 3; ++i) r.Verified(8, 0);  // then free text: drafts miss at once
  EXPECT_GT(DraftLength(r, 8, 0.25), 0);         // one miss after many keeps shortens...
  EXPECT_LT(DraftLength(r, 8, 0.25), 8);
  int misses = 3;
  for (; DraftLength(r, 8, 0.25) > 0 && misses < 100; ++misses) r.Verified(1, 0);
  EXPECT_LT(misses, 20);  // ...and misses in a row stop it
  DraftRecord missing;  // a sequence whose drafts all missed
  for (int i = 0; i < 10; ++i) missing.Verified(2, 0);
  EXPECT_EQ(DraftLength(missing, 8, 0.25), 0);
  int idle = 0;
  while (DraftLength(missing, 8, 0.25) == 0 && idle < 1000) {
    missing.Idle();
    ++idle;
  }
  EXPECT_GT(idle, 5);   // it waits a while...
  EXPECT_LT(idle, 40);  // ...then tries again
}

struct Mode {
  std::string name;
  int budget = 512;
  int64_t blocks = 512;
  int block_size = 16;
  bool prefix_cache = true;
  bool concurrent = true;
};

// What a request produced: its tokens, their log-probabilities, its finish and its final
// sampler position.
struct Result {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<int32_t> top_ids;
  FinishReason finish = FinishReason::kNone;
  int32_t rng_draws = 0;
  bool operator==(const Result&) const = default;
};

class SpeculativeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { file_ = std::move(*gguf::GgufFile::Open(testing::TinyModelPath())).release(); }
  static void TearDownTestSuite() { delete file_; }

  static std::unique_ptr<Engine> MakeEngine(const Mode& m, int draft_tokens) {
    EngineOptions o;
    o.num_kv_blocks = m.blocks;
    o.block_size = m.block_size;
    o.enable_prefix_cache = m.prefix_cache;
    o.scheduler.token_budget = m.budget;
    o.scheduler.max_num_seqs = 64;
    o.eog_token_ids = {2};
    o.speculative.num_draft_tokens = draft_tokens;
    o.speculative.max_decoding = 64;  // draft in batches too
    auto e = Engine::Create(*file_, std::move(*cpu::CpuBackend::Create({.threads = 2})), o);
    EXPECT_TRUE(e.ok()) << e.status();
    return std::move(*e);
  }

  // Prompts that repeat themselves (a random stretch, three times, then its start), so that
  // prompt lookup has something to find; and a mix of sampling settings.
  static std::vector<GenerateRequest> Workload() {
    std::vector<GenerateRequest> rs;
    const int lens[] = {4, 9, 16, 23, 40, 6, 31, 12};
    for (int i = 0; i < 8; ++i) {
      GenerateRequest r;
      r.id = fmt::format("r{}", i);
      std::mt19937 rng(70 + i);
      std::vector<int32_t> piece;
      for (int t = 0; t < lens[i]; ++t) piece.push_back(3 + static_cast<int32_t>(rng() % 250));
      for (int rep = 0; rep < 3; ++rep) r.prompt.insert(r.prompt.end(), piece.begin(), piece.end());
      r.prompt.insert(r.prompt.end(), piece.begin(), piece.begin() + (lens[i] + 1) / 2);
      r.sampling.max_tokens = 40;
      r.sampling.ignore_eos = true;
      r.sampling.temperature = 0;
      r.sampling.logprobs = 2;
      if (i % 2 == 1) {
        r.sampling.temperature = 4.0f;  // seeded sampling: the same draws per output token
        r.sampling.seed = 500 + i;
      }
      if (i == 2 || i == 3) {
        r.sampling.presence_penalty = 0.3f;
        r.sampling.repetition_penalty = 1.1f;
        r.sampling.logit_bias = {{r.prompt[1], 2.0f}};
      }
      if (i == 4) r.sampling.max_tokens = 7;  // a draft may not run past max_tokens
      if (i == 6) {
        r.sampling.ignore_eos = false;  // end-of-generation after min_tokens ends the run mid-draft
        r.sampling.min_tokens = 12;
        r.sampling.logit_bias = {{2, 100.0f}};
      }
      rs.push_back(r);
    }
    return rs;
  }

  static std::map<std::string, Result> RunAll(Engine& e, const std::vector<GenerateRequest>& rs) {
    for (const auto& r : rs) EXPECT_TRUE(e.Add(r).ok());
    std::map<std::string, Result> out;
    while (e.HasWork()) {
      auto step = e.Step();
      EXPECT_TRUE(step.ok()) << step.status();
      if (!step.ok()) break;
      for (const auto& o : *step) {
        Result& r = out[o.id];
        EXPECT_EQ(o.logprobs.size(), o.new_tokens.size()) << o.id;
        r.tokens.insert(r.tokens.end(), o.new_tokens.begin(), o.new_tokens.end());
        for (const TokenLogprob& lp : o.logprobs) {
          r.logprobs.push_back(lp.logprob);
          for (const auto& [id, v] : lp.top) r.top_ids.push_back(id);
        }
        if (!o.new_tokens.empty()) r.rng_draws = o.rng_draws;
        if (o.finish != FinishReason::kNone) r.finish = o.finish;
      }
    }
    return out;
  }

  static std::map<std::string, Result> Run(Engine& e, const std::vector<GenerateRequest>& rs, bool concurrent) {
    if (concurrent) return RunAll(e, rs);
    std::map<std::string, Result> out;
    for (const auto& r : rs) out[r.id] = RunAll(e, {r})[r.id];
    return out;
  }

  static inline gguf::GgufFile* file_ = nullptr;
};

TEST_F(SpeculativeTest, OutputsEqualDecodingWithoutDraftsInEveryMode) {
  const auto requests = Workload();
  auto plain = MakeEngine({}, 0);
  const auto expected = Run(*plain, requests, /*concurrent=*/false);
  EXPECT_EQ(plain->counters().draft_tokens, 0);
  EXPECT_EQ(expected.at("r4").tokens.size(), 7u);
  EXPECT_EQ(expected.at("r6").finish, FinishReason::kStop);  // the biased end token, after min_tokens

  const std::vector<Mode> modes = {
      {.name = "alone", .concurrent = false},
      {.name = "8 concurrent"},
      {.name = "budget 8: drafts cut to what fits", .budget = 8},
      {.name = "tiny KV pool: preemption", .budget = 64, .blocks = 20},
      {.name = "block size 4, no prefix cache", .block_size = 4, .prefix_cache = false},
  };
  for (int draft_tokens : {1, 4, 16}) {
    for (const Mode& mode : modes) {
      auto e = MakeEngine(mode, draft_tokens);
      const auto got = Run(*e, requests, mode.concurrent);
      for (const auto& [id, want] : expected) {
        const Result& g = got.at(id);
        EXPECT_EQ(g.tokens, want.tokens) << mode.name << ", k=" << draft_tokens << ", " << id;
        EXPECT_EQ(g.logprobs, want.logprobs) << mode.name << ", k=" << draft_tokens << ", " << id;
        EXPECT_EQ(g.top_ids, want.top_ids) << mode.name << ", k=" << draft_tokens << ", " << id;
        EXPECT_EQ(g.finish, want.finish) << mode.name << ", k=" << draft_tokens << ", " << id;
        EXPECT_EQ(g.rng_draws, want.rng_draws) << mode.name << ", k=" << draft_tokens << ", " << id;
      }
      const EngineCounters& c = e->counters();
      EXPECT_GT(c.accepted_draft_tokens, 0) << mode.name << ", k=" << draft_tokens;
      EXPECT_LT(c.accepted_draft_tokens, c.draft_tokens) << mode.name << ", k=" << draft_tokens;
      // Fewer iterations than tokens generated: the kept drafts saved steps. Decode tokens count
      // what decode iterations produced, not the draft tokens they ran for nothing.
      if (mode.name == "alone") {
        EXPECT_LT(c.steps, plain->counters().steps) << "k=" << draft_tokens;
        EXPECT_EQ(c.decode_tokens, plain->counters().decode_tokens) << "k=" << draft_tokens;
      }
      EXPECT_EQ(e->block_manager().num_in_use(), 0) << mode.name << ", k=" << draft_tokens;
      if (mode.blocks == 20) {
        EXPECT_GT(c.preemptions, 0);
      }
    }
  }
}

TEST_F(SpeculativeTest, ARequestCanOptOutAndABusyBatchDoesNotDraft) {
  auto requests = Workload();
  for (auto& r : requests) r.sampling.speculative = false;
  auto e = MakeEngine({}, 4);
  RunAll(*e, requests);
  EXPECT_EQ(e->counters().draft_tokens, 0);

  // max_decoding 2: with 8 sequences decoding nothing is drafted; alone, drafts are.
  EngineOptions o;
  o.num_kv_blocks = 512;
  o.eog_token_ids = {2};
  o.scheduler.token_budget = 1024;  // every prompt in the first iteration: all 8 decode together
  o.speculative = {.num_draft_tokens = 4, .max_decoding = 2};
  auto busy = std::move(*Engine::Create(*file_, std::move(*cpu::CpuBackend::Create({.threads = 2})), o));
  requests = Workload();
  for (auto& r : requests) r.sampling.max_tokens = 4;  // all finish while all 8 decode
  RunAll(*busy, requests);
  EXPECT_EQ(busy->counters().draft_tokens, 0);
  RunAll(*busy, {Workload()[0]});
  EXPECT_GT(busy->counters().draft_tokens, 0);
}

TEST_F(SpeculativeTest, SequencesWhoseDraftsMissDraftLessWithTheSameOutput) {
  // Seeded sampling at a high temperature after a random prompt: drafts are seldom kept.
  std::vector<GenerateRequest> requests;
  for (int i = 0; i < 4; ++i) {
    GenerateRequest r;
    r.id = fmt::format("s{}", i);
    std::mt19937 rng(900 + i);
    for (int t = 0; t < 60; ++t) r.prompt.push_back(3 + static_cast<int32_t>(rng() % 40));
    r.sampling.max_tokens = 60;
    r.sampling.ignore_eos = true;
    r.sampling.temperature = 8.0f;
    r.sampling.seed = 40 + i;
    r.sampling.logprobs = 0;
    requests.push_back(r);
  }
  auto run = [&](double cost) {
    EngineOptions o;
    o.num_kv_blocks = 512;
    o.speculative = {.num_draft_tokens = 4, .min_ngram = 1, .max_decoding = 64, .draft_cost = cost};
    auto e = std::move(*Engine::Create(*file_, std::move(*cpu::CpuBackend::Create({.threads = 2})), o));
    auto out = RunAll(*e, requests);
    return std::make_pair(out, e->counters());
  };
  const auto [fixed, fixed_counters] = run(0.0);
  const auto [adaptive, adaptive_counters] = run(0.25);
  for (const auto& [id, r] : fixed) EXPECT_EQ(adaptive.at(id).tokens, r.tokens) << id;
  const double fixed_rate = static_cast<double>(fixed_counters.accepted_draft_tokens) / fixed_counters.draft_tokens;
  ASSERT_LT(fixed_rate, 0.3);  // the premise: most draft tokens miss
  // Fewer tokens run for nothing, about as many kept (here: 112 drafted, 45 kept, against 183
  // and 43).
  EXPECT_LT(adaptive_counters.draft_tokens, fixed_counters.draft_tokens * 3 / 4);
  EXPECT_GE(adaptive_counters.accepted_draft_tokens, fixed_counters.accepted_draft_tokens * 4 / 5);
}

TEST_F(SpeculativeTest, ADraftNeverTakesTheBlockAnotherDecodeNeeds) {
  // Three blocks of 16: A (15 prompt tokens) and B (16) hold one each after their prefill. Then A's
  // draft would start a second block, and B's next token needs one: B gets the last block, A
  // decodes without its draft, nobody is preempted.
  EngineOptions o;
  o.num_kv_blocks = 3;
  o.speculative = {.num_draft_tokens = 4, .min_ngram = 1, .max_decoding = 64, .draft_cost = 0};
  auto e = std::move(*Engine::Create(*file_, std::move(*cpu::CpuBackend::Create({.threads = 2})), o));
  GenerateRequest a;
  a.id = "a";
  for (int i = 0; i < 15; ++i) a.prompt.push_back(5 + i % 3);  // 5 6 7 5 6 7 ...: something to look up
  a.sampling.temperature = 0;
  a.sampling.max_tokens = 8;
  a.sampling.ignore_eos = true;
  GenerateRequest b = a;
  b.id = "b";
  b.prompt.assign(16, 9);
  ASSERT_TRUE(e->Add(a).ok());
  ASSERT_TRUE(e->Add(b).ok());
  ASSERT_TRUE(e->Step().ok());  // both prefills
  auto step = e->Step();        // both decode
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(step->size(), 2u);
  EXPECT_EQ(e->counters().preemptions, 0);  // (later A needs that block too: the pool is that small)
  while (e->HasWork()) ASSERT_TRUE(e->Step().ok());
  EXPECT_EQ(e->block_manager().num_in_use(), 0);
}

TEST_F(SpeculativeTest, SettingsOutOfRangeAreRefused) {
  for (SpeculativeOptions bad : {SpeculativeOptions{.num_draft_tokens = 65}, SpeculativeOptions{.num_draft_tokens = 4, .min_ngram = 0},
                                 SpeculativeOptions{.num_draft_tokens = 4, .min_ngram = 3, .max_ngram = 2},
                                 SpeculativeOptions{.num_draft_tokens = 4, .max_decoding = 0},
                                 SpeculativeOptions{.num_draft_tokens = 4, .draft_cost = 1.0}}) {
    EngineOptions o;
    o.num_kv_blocks = 64;
    o.speculative = bad;
    auto e = Engine::Create(*file_, std::move(*cpu::CpuBackend::Create({.threads = 1})), o);
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(e.status().message().find("speculative decoding"), std::string::npos) << e.status();
  }
}

}  // namespace
}  // namespace tandem
