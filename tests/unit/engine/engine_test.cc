// The engine on tiny random-weight models: request validation, stopping, cancellation, and
// mode invariance (greedy tokens do not depend on the token budget, prefix-cache hits,
// batching or preemption).
#include "engine/engine.h"

#include "fmt/format.h"

#include <algorithm>
#include <map>
#include <random>

#include "engine/backends/cpu/cpu_backend.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "testing/tiny_model.h"

namespace tandem {
namespace {

struct Options {
  int token_budget = 512;
  int64_t num_kv_blocks = 512;
  bool prefix_cache = true;
  int threads = 2;
  int block_size = 16;
  std::vector<std::string> token_pieces;  // JSON mode's token bytes (empty: JSON refused)
};

// Token pieces for JSON mode on the tiny model: id i stands for kJsonFragments[i % size], except
// the end-of-generation token 2, which has no bytes.
const std::vector<std::string> kJsonFragments = {"{", "}", "\"k\"", ":", "1", ",", " ", "\"v\"", "[", "]",
                                                 "true", "null", "\"", "ab", "{\"a\":", "0}", "\n", "k"};
std::vector<std::string> JsonPieces() {
  std::vector<std::string> pieces(4096);
  for (size_t i = 0; i < pieces.size(); ++i) pieces[i] = kJsonFragments[i % kJsonFragments.size()];
  pieces[2].clear();
  return pieces;
}

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    file_ = std::move(*gguf::GgufFile::Open(testing::TinyModelPath())).release();
  }
  static void TearDownTestSuite() { delete file_; }

  static std::unique_ptr<Engine> MakeEngine(const Options& o) {
    auto backend = cpu::CpuBackend::Create({.threads = o.threads});
    EXPECT_TRUE(backend.ok());
    EngineOptions options;
    options.num_kv_blocks = o.num_kv_blocks;
    options.block_size = o.block_size;
    options.enable_prefix_cache = o.prefix_cache;
    options.scheduler.token_budget = o.token_budget;
    options.scheduler.max_num_seqs = 64;
    options.eog_token_ids = {2};
    options.token_pieces = o.token_pieces;
    auto engine = Engine::Create(*file_, std::move(*backend), options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return std::move(*engine);
  }

  static std::vector<int32_t> Prompt(int len, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> p(len);
    for (auto& t : p) t = 3 + static_cast<int32_t>(rng() % 250);
    return p;
  }

  static GenerateRequest Greedy(const std::string& id, std::vector<int32_t> prompt, int max_tokens = 24) {
    GenerateRequest r;
    r.id = id;
    r.prompt = std::move(prompt);
    r.sampling.temperature = 0;
    r.sampling.max_tokens = max_tokens;
    r.sampling.ignore_eos = true;
    return r;
  }

  // A sampled (temperature 1, seeded) request for JSON output that ends at end-of-generation.
  static GenerateRequest SampledJson(const std::string& id, std::vector<int32_t> prompt, int seed, int max_tokens,
                                     ResponseFormat format, std::string schema = {}) {
    GenerateRequest r = Greedy(id, std::move(prompt), max_tokens);
    r.sampling.temperature = 1.0f;
    r.sampling.seed = seed;
    r.sampling.ignore_eos = false;
    r.sampling.response_format = format;
    r.sampling.json_schema = std::move(schema);
    return r;
  }

  // Runs every request to completion; returns each request's tokens and finish.
  static std::map<std::string, std::pair<std::vector<int32_t>, FinishReason>> RunAll(
      Engine& engine, const std::vector<GenerateRequest>& requests) {
    for (const auto& r : requests) EXPECT_TRUE(engine.Add(r).ok());
    std::map<std::string, std::pair<std::vector<int32_t>, FinishReason>> out;
    while (engine.HasWork()) {
      auto step = engine.Step();
      EXPECT_TRUE(step.ok()) << step.status();
      if (!step.ok()) break;
      for (const auto& o : *step) {
        auto& [tokens, finish] = out[o.id];
        tokens.insert(tokens.end(), o.new_tokens.begin(), o.new_tokens.end());
        if (o.finish != FinishReason::kNone) finish = o.finish;
      }
    }
    return out;
  }

  static std::vector<GenerateRequest> Workload() {
    std::vector<GenerateRequest> rs;
    const int lens[] = {1, 5, 15, 16, 17, 31, 40, 64, 100, 130, 7, 250, 33, 48, 90, 200};
    for (int i = 0; i < 16; ++i) rs.push_back(Greedy(fmt::format("r{}", i), Prompt(lens[i], 100 + i)));
    return rs;
  }

  static inline gguf::GgufFile* file_ = nullptr;
};

TEST_F(EngineTest, GreedyTokensDoNotDependOnBudgetBatchingPrefixCacheOrPreemption) {
  const auto requests = Workload();
  // Reference: each request alone, budget 512, no prefix cache.
  std::map<std::string, std::vector<int32_t>> reference;
  {
    auto engine = MakeEngine({.prefix_cache = false});
    for (const auto& r : requests) reference[r.id] = RunAll(*engine, {r})[r.id].first;
  }
  for (const auto& [id, tokens] : reference) ASSERT_EQ(tokens.size(), 24u) << id;

  struct Mode {
    std::string name;
    Options options;
    bool concurrent;
  };
  const std::vector<Mode> modes = {
      {"budget 16 alone", {.token_budget = 16}, false},
      {"budget 64 alone", {.token_budget = 64}, false},
      {"budget 512, 16 concurrent", {.token_budget = 512}, true},
      {"budget 16, 16 concurrent", {.token_budget = 16}, true},
      {"one thread, 16 concurrent", {.token_budget = 64, .threads = 1}, true},
      {"block size 8", {.token_budget = 64, .block_size = 8}, true},
      {"block size 32", {.token_budget = 64, .block_size = 32}, true},
  };
  for (const auto& mode : modes) {
    auto engine = MakeEngine(mode.options);
    std::map<std::string, std::vector<int32_t>> got;
    if (mode.concurrent) {
      for (auto& [id, v] : RunAll(*engine, requests)) got[id] = v.first;
    } else {
      for (const auto& r : requests) got[r.id] = RunAll(*engine, {r})[r.id].first;
    }
    for (const auto& [id, tokens] : reference) EXPECT_EQ(got[id], tokens) << mode.name << ", request " << id;
  }
}

TEST_F(EngineTest, PrefixCacheHitsGiveTheSameTokens) {
  auto engine = MakeEngine({.token_budget = 64});
  const auto shared = Prompt(100, 7);
  auto a = Greedy("a", shared);
  const auto first = RunAll(*engine, {a})["a"].first;
  const int64_t hits_before = engine->counters().prefix_hit_tokens;
  a.id = "a2";
  const auto second = RunAll(*engine, {a})["a2"].first;
  EXPECT_EQ(first, second);
  EXPECT_EQ(engine->counters().prefix_hit_tokens - hits_before, 96);  // 6 full blocks of 16
  // A prompt sharing only the first 40 tokens hits the 2 full blocks they fill.
  auto b = Greedy("b", std::vector<int32_t>(shared.begin(), shared.begin() + 40));
  b.prompt.push_back(9);
  auto fresh = MakeEngine({.prefix_cache = false});
  const auto expect_b = RunAll(*fresh, {b})["b"].first;
  EXPECT_EQ(RunAll(*engine, {b})["b"].first, expect_b);
}

TEST_F(EngineTest, PreemptionUnderATinyKvPoolKeepsOutputsIdentical) {
  const auto requests = Workload();
  auto roomy = MakeEngine({.token_budget = 64});
  const auto expected = RunAll(*roomy, requests);
  // 24 blocks of 16 tokens: the 250-token prompt alone needs 17; everything cannot run at once.
  auto tight = MakeEngine({.token_budget = 64, .num_kv_blocks = 24});
  const auto got = RunAll(*tight, requests);
  EXPECT_GT(tight->counters().preemptions, 0);
  for (const auto& [id, v] : expected) EXPECT_EQ(got.at(id).first, v.first) << id;
  EXPECT_EQ(tight->block_manager().num_in_use(), 0);
}

TEST_F(EngineTest, StopsOnEosStopTokensAndMaxTokens) {
  auto engine = MakeEngine({});
  auto r = Greedy("x", Prompt(20, 1), 12);
  const auto free_run = RunAll(*engine, {r})["x"].first;
  ASSERT_EQ(free_run.size(), 12u);
  // Stop token: the 5th generated token.
  r.id = "stop";
  r.sampling.stop_token_ids = {free_run[4]};
  const auto stopped = RunAll(*engine, {r})["stop"];
  size_t first = 0;
  while (free_run[first] != free_run[4]) ++first;
  EXPECT_EQ(stopped.first, std::vector<int32_t>(free_run.begin(), free_run.begin() + first + 1));
  EXPECT_EQ(stopped.second, FinishReason::kStop);
  // End of generation (token 2) ends a request unless ignore_eos.
  r = Greedy("len", Prompt(20, 1), 5);
  const auto len = RunAll(*engine, {r})["len"];
  EXPECT_EQ(len.first.size(), 5u);
  EXPECT_EQ(len.second, FinishReason::kLength);
}

TEST_F(EngineTest, SeededSamplingIsReproducibleAloneAndInABatch) {
  auto engine = MakeEngine({.token_budget = 32});
  GenerateRequest r = Greedy("s", Prompt(30, 3), 40);
  r.sampling.temperature = 4.0f;  // the random model's distributions are sharp
  r.sampling.seed = 1234;
  const auto alone = RunAll(*engine, {r})["s"].first;
  auto batch = Workload();
  r.id = "s2";
  batch.push_back(r);
  EXPECT_EQ(RunAll(*engine, batch)["s2"].first, alone);
  r.id = "s3";
  r.sampling.seed = 99;
  EXPECT_NE(RunAll(*engine, {r})["s3"].first, alone);
}

TEST_F(EngineTest, RejectsInvalidRequestsWithClearErrors) {
  auto engine = MakeEngine({});
  const int vocab = engine->model_config().vocab_size;
  auto expect = [&](GenerateRequest r, absl::StatusCode code, const std::string& fragment) {
    const absl::Status s = engine->Add(r);
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_NE(std::string(s.message()).find(fragment), std::string::npos) << s;
  };
  expect(Greedy("e", {}), absl::StatusCode::kInvalidArgument, "empty");
  expect(Greedy("n", {5, -1}), absl::StatusCode::kInvalidArgument, "outside the vocabulary");
  expect(Greedy("v", {5, vocab}), absl::StatusCode::kInvalidArgument, "outside the vocabulary");
  expect(Greedy("l", Prompt(1000, 1), 100), absl::StatusCode::kInvalidArgument, "exceeds the context length");
  auto bad = Greedy("t", {5});
  bad.sampling.temperature = -1;
  expect(bad, absl::StatusCode::kInvalidArgument, "temperature");
  ASSERT_TRUE(engine->Add(Greedy("dup", {5})).ok());
  expect(Greedy("dup", {5}), absl::StatusCode::kAlreadyExists, "already exists");
  auto small = MakeEngine({.num_kv_blocks = 2});
  EXPECT_EQ(small->Add(Greedy("big", Prompt(100, 1))).code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(EngineTest, CancellingAtAnyPointFreesEveryBlock) {
  auto engine = MakeEngine({.token_budget = 32, .num_kv_blocks = 64});
  std::mt19937 rng(9);
  int cancelled = 0;
  for (int round = 0; round < 10; ++round) {
    auto requests = Workload();
    for (auto& r : requests) {
      r.id += fmt::format("-{}", round);
      ASSERT_TRUE(engine->Add(r).ok());
    }
    while (engine->HasWork()) {
      auto step = engine->Step();
      ASSERT_TRUE(step.ok());
      for (const auto& r : requests) {
        if (rng() % 40 == 0 && engine->Cancel(r.id)) ++cancelled;
      }
      for (const auto& o : *step) {
        if (o.finish == FinishReason::kCancelled) {
          EXPECT_TRUE(o.new_tokens.empty());
        }
      }
    }
    ASSERT_EQ(engine->block_manager().num_in_use(), 0) << "round " << round;
    ASSERT_TRUE(engine->block_manager().CheckInvariants());
  }
  EXPECT_GT(cancelled, 10);
  EXPECT_FALSE(engine->Cancel("nonexistent"));
}

TEST_F(EngineTest, ScoreTokensMatchesTheLogitsGenerationUses) {
  auto engine = MakeEngine({.token_budget = 16});
  const auto prompt = Prompt(50, 4);
  const auto generated = RunAll(*engine, {Greedy("g", prompt, 8)})["g"].first;
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), generated.begin(), generated.end() - 1);
  for (int chunk : {7, 512}) {
    auto logits = engine->ScoreTokens(all, chunk);
    ASSERT_TRUE(logits.ok());
    const int vocab = engine->model_config().vocab_size;
    for (size_t i = 0; i < generated.size(); ++i) {
      const float* row = logits->data() + (prompt.size() - 1 + i) * vocab;
      EXPECT_EQ(std::max_element(row, row + vocab) - row, generated[i]) << "position " << i;
    }
  }
  EXPECT_EQ(engine->block_manager().num_in_use(), 0);
}

// vLLM's min_tokens: an end-of-generation token (2 in the tiny model) or a stop token pushed to
// the top by a bias is not sampled before min_tokens outputs, and ends the request right after.
// A resumed request's earlier output counts.
TEST_F(EngineTest, MinTokensHoldsBackEndOfGenerationAndStopTokens) {
  auto engine = MakeEngine({});
  auto request = [&](const std::string& id, int32_t pushed, int min_tokens, bool stop_token) {
    GenerateRequest r = Greedy(id, Prompt(12, 3), 20);
    r.sampling.logit_bias = {{pushed, 100.0f}};
    r.sampling.ignore_eos = false;
    if (stop_token) r.sampling.stop_token_ids = {pushed};
    r.sampling.min_tokens = min_tokens;
    return r;
  };
  auto out = RunAll(*engine, {request("eog", 2, 0, false), request("eog-min5", 2, 5, false),
                              request("stop-min3", 7, 3, true)});
  EXPECT_EQ(out["eog"].first, std::vector<int32_t>({2}));
  ASSERT_EQ(out["eog-min5"].first.size(), 6u);
  for (int i = 0; i < 5; ++i) EXPECT_NE(out["eog-min5"].first[i], 2) << i;
  EXPECT_EQ(out["eog-min5"].first.back(), 2);
  EXPECT_EQ(out["eog-min5"].second, FinishReason::kStop);
  ASSERT_EQ(out["stop-min3"].first.size(), 4u);
  EXPECT_EQ(out["stop-min3"].first.back(), 7);
  EXPECT_EQ(std::count(out["stop-min3"].first.begin(), out["stop-min3"].first.end(), 7), 1);

  // Resumed after 3 outputs (the last 3 prompt tokens): 2 more before the end may come.
  GenerateRequest resumed = request("resumed", 2, 5, false);
  resumed.prompt.insert(resumed.prompt.end(), {11, 12, 13});
  resumed.sampling.output_in_prompt = 3;
  auto r = RunAll(*engine, {resumed});
  ASSERT_EQ(r["resumed"].first.size(), 3u);
  EXPECT_EQ(r["resumed"].first.back(), 2);

  GenerateRequest bad = request("bad", 2, -1, false);
  EXPECT_FALSE(engine->Add(bad).ok());
}

// `tandem perplexity` asks only for the rows it scores; they are the same rows a full pass gives,
// whichever chunk the first one falls in.
TEST_F(EngineTest, ScoreTokensFromARowGivesTheTailOfTheFullPass) {
  auto engine = MakeEngine({.token_budget = 16});
  const auto tokens = Prompt(40, 9);
  auto full = engine->ScoreTokens(tokens, 512);
  ASSERT_TRUE(full.ok());
  const size_t vocab = engine->model_config().vocab_size;
  for (int chunk : {7, 16, 512}) {
    for (int first : {1, 20, 39}) {
      auto tail = engine->ScoreTokens(tokens, chunk, first);
      ASSERT_TRUE(tail.ok()) << tail.status();
      ASSERT_EQ(tail->size(), (tokens.size() - first) * vocab);
      for (size_t i = 0; i < tail->size(); ++i) {
        ASSERT_NEAR((*tail)[i], (*full)[first * vocab + i], 1e-3) << "chunk " << chunk << " first " << first;
      }
    }
  }
  EXPECT_FALSE(engine->ScoreTokens(tokens, 16, 40).ok());
  EXPECT_FALSE(engine->ScoreTokens(tokens, 0).ok());
  EXPECT_EQ(engine->block_manager().num_in_use(), 0);
}

// response_format json_object: whatever the (random) model prefers, the output is a JSON object
// prefix, and a request that stops has closed one, even before min_tokens; an engine that was
// not given the token pieces refuses JSON requests.
// Prompt log-probabilities (completions' echo + logprobs): one per prompt token after the first,
// the log-softmax of the row before it, with its k best, whatever the chunking, the batch, a
// warm prefix cache or preemption under a tiny KV pool; and reported once, with the first token.
TEST_F(EngineTest, PromptLogprobsAreTheLogSoftmaxOfEveryPromptPosition) {
  auto reference = MakeEngine({});
  std::vector<GenerateRequest> requests = Workload();
  for (GenerateRequest& r : requests) {
    r.sampling.prompt_logprobs = 2;
    r.sampling.max_tokens = 3;
  }
  std::vector<float> logsm;
  for (const Options& o : {Options{.token_budget = 16}, Options{.token_budget = 64, .num_kv_blocks = 24}}) {
    auto engine = MakeEngine(o);
    // A warm prefix cache: every prompt ran once already, so only a bypass recomputes them.
    std::vector<GenerateRequest> warm = Workload();
    for (GenerateRequest& r : warm) r.id += "-warm";
    RunAll(*engine, warm);
    for (const auto& r : requests) ASSERT_TRUE(engine->Add(r).ok());
    std::map<std::string, std::vector<TokenLogprob>> got;
    std::map<std::string, int> reports;
    while (engine->HasWork()) {
      auto step = engine->Step();
      ASSERT_TRUE(step.ok()) << step.status();
      for (RequestOutput& out : *step) {
        if (out.new_tokens.empty()) continue;
        if (reports[out.id]++ == 0) {
          got[out.id] = std::move(out.prompt_logprobs);
          EXPECT_EQ(out.cached_prompt_tokens, 0) << out.id;
        } else {
          EXPECT_TRUE(out.prompt_logprobs.empty()) << out.id;
        }
      }
    }
    if (o.num_kv_blocks == 24) {
      EXPECT_GT(engine->counters().preemptions, 0);
    }
    const int vocab = engine->model_config().vocab_size;
    for (const GenerateRequest& r : requests) {
      const std::vector<TokenLogprob>& lp = got[r.id];
      ASSERT_EQ(lp.size(), r.prompt.size() - 1) << r.id;
      auto rows = reference->ScoreTokens(r.prompt);
      ASSERT_TRUE(rows.ok());
      for (size_t i = 0; i + 1 < r.prompt.size(); ++i) {
        std::span<const float> row(rows->data() + i * vocab, vocab);
        const double lse = LogSumExp(row);
        logsm.assign(row.begin(), row.end());
        for (float& v : logsm) v = static_cast<float>(v - lse);
        EXPECT_NEAR(lp[i].logprob, logsm[r.prompt[i + 1]], 1e-3) << r.id << " token " << i + 1;
        ASSERT_EQ(lp[i].top.size(), 2u);
        EXPECT_EQ(lp[i].top[0].first, ArgMax(row)) << r.id << " token " << i + 1;
        EXPECT_NEAR(lp[i].top[0].second, logsm[lp[i].top[0].first], 1e-3);
        EXPECT_GE(lp[i].top[0].second, lp[i].top[1].second);
      }
    }
    EXPECT_EQ(engine->block_manager().num_in_use(), 0);
  }
}

TEST_F(EngineTest, JsonModeSamplesOnlyJsonAndEndsWhenTheObjectCloses) {
  Options o;
  o.token_pieces = JsonPieces();
  auto engine = MakeEngine(o);
  auto text_of = [&](const std::vector<int32_t>& tokens) {
    std::string text;
    for (int32_t t : tokens) text += o.token_pieces[static_cast<size_t>(t)];
    return text;
  };
  std::vector<GenerateRequest> requests;
  for (int seed = 0; seed < 16; ++seed) {
    requests.push_back(SampledJson(fmt::format("s{}", seed), Prompt(10, seed), seed, 200, ResponseFormat::kJsonObject));
  }
  GenerateRequest early = Greedy("early", Prompt(10, 99), 100);
  early.sampling.ignore_eos = false;
  early.sampling.min_tokens = 50;
  early.sampling.response_format = ResponseFormat::kJsonObject;
  for (int32_t id = 1; id < engine->model_config().vocab_size; id += static_cast<int32_t>(kJsonFragments.size())) {
    early.sampling.logit_bias.emplace_back(id, 100.0f);  // every "}" token
  }
  requests.push_back(early);
  GenerateRequest early_ignoring_eos = early;  // a closed object ends the answer all the same
  early_ignoring_eos.id = "early-ignore-eos";
  early_ignoring_eos.sampling.ignore_eos = true;
  requests.push_back(early_ignoring_eos);
  auto out = RunAll(*engine, requests);
  int closed = 0;
  for (const auto& [id, result] : out) {
    const auto& [tokens, finish] = result;
    const std::string text = text_of(tokens);
    JsonRecognizer r;
    EXPECT_TRUE(r.FeedAll(text)) << id << ": " << text;
    if (finish == FinishReason::kStop) {
      ++closed;
      EXPECT_EQ(tokens.back(), 2) << id;
      EXPECT_TRUE(nlohmann::json::parse(text).is_object()) << id << ": " << text;
    } else {
      EXPECT_EQ(finish, FinishReason::kLength) << id;
      EXPECT_FALSE(r.Complete()) << id << ": " << text;
    }
  }
  EXPECT_EQ(out["early"].second, FinishReason::kStop) << text_of(out["early"].first);
  EXPECT_LT(out["early"].first.size(), 50u);
  EXPECT_EQ(out["early-ignore-eos"], out["early"]);
  EXPECT_GE(closed, 4);

  // A resumed request's output so far is in its prompt: `{"k"` needs a colon (or space) next.
  GenerateRequest resumed = Greedy("resumed", Prompt(10, 5), 4);
  resumed.prompt.insert(resumed.prompt.end(), {0, 2 + static_cast<int32_t>(kJsonFragments.size())});
  resumed.sampling.output_in_prompt = 2;
  resumed.sampling.response_format = ResponseFormat::kJsonObject;
  auto r = RunAll(*engine, {resumed});
  ASSERT_FALSE(r["resumed"].first.empty());
  const std::string next = o.token_pieces[static_cast<size_t>(r["resumed"].first[0])];
  EXPECT_TRUE(next == ":" || next == " " || next == "\n") << next;

  auto plain = MakeEngine({});
  const absl::Status refused = plain->Add(resumed);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("JSON"), std::string::npos) << refused;
}

// response_format json_schema: the random model writes {"k": <integer>} and nothing else, on a
// fresh request and on one handed over after its first token (the decode worker's path).
TEST_F(EngineTest, JsonSchemaModeFollowsTheSchemaOnBothPaths) {
  Options o;
  o.token_pieces = JsonPieces();
  auto engine = MakeEngine(o);
  const std::string schema = R"({"type": "object", "properties": {"k": {"type": "integer"}}, "required": ["k"],
                                 "additionalProperties": false})";
  std::vector<GenerateRequest> requests;
  for (int seed = 0; seed < 12; ++seed) {
    requests.push_back(
        SampledJson(fmt::format("s{}", seed), Prompt(10, seed), seed, 60, ResponseFormat::kJsonSchema, schema));
  }
  int closed = 0;
  for (const auto& [id, result] : RunAll(*engine, requests)) {
    std::string text;
    for (int32_t t : result.first) text += o.token_pieces[static_cast<size_t>(t)];
    if (result.second != FinishReason::kStop) continue;
    ++closed;
    const nlohmann::json value = nlohmann::json::parse(text);
    ASSERT_TRUE(value.is_object()) << text;
    EXPECT_EQ(value.size(), 1u) << text;
    EXPECT_TRUE(value["k"].is_number_integer()) << text;
  }
  EXPECT_GE(closed, 4);

  GenerateRequest handed = requests[0];
  handed.id = "handed";
  handed.sampling.temperature = 0;
  auto blocks = engine->AllocateKvBlocks(static_cast<int32_t>(handed.prompt.size()) + 1);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  ASSERT_TRUE(engine->AddPrefilled(handed, *blocks, /*first_token=*/0, 0).ok());  // "{" came from the prefill side
  auto out = RunAll(*engine, {});
  std::string text = "{";
  for (int32_t t : out["handed"].first) text += o.token_pieces[static_cast<size_t>(t)];
  auto compiled = CompileJsonSchema(schema);
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  JsonRecognizer r(compiled->get());
  EXPECT_TRUE(r.FeedAll(text)) << text;

  GenerateRequest bad = requests[0];
  bad.id = "bad";
  bad.sampling.json_schema = R"({"type": "object", "minProperties": 1})";
  const absl::Status refused = engine->Add(bad);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("'minProperties' is not supported"), std::string::npos) << refused;
}

}  // namespace
}  // namespace tandem
