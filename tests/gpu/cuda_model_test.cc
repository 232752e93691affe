// The whole model through the CUDA backend against the CPU backend (tiny random-weight models),
// and greedy generation against llama.cpp's goldens on the bundled model.
//
// Tolerances (model vs CPU): the CUDA backend rounds weights and GEMM inputs to bf16 (8-bit
// mantissa) where the CPU keeps F32 weights in f32, so logits differ by ~1e-2 relative. Per
// step: ||gpu - cpu||_2 / ||cpu||_2 <= 3e-2, and the greedy token must agree unless the CPU's
// top-1/top-2 gap is under twice the largest logit difference of that step (a near-tie).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>

#include "engine/backends/cpu/cpu_backend.h"
#include "engine/backends/cuda/cuda_backend.h"
#include "engine/backends/cuda/cuda_backend_factory.h"
#include "engine/engine.h"
#include "engine/llama_model.h"
#include "engine/sampling.h"
#include "gpu/gpu_test_util.h"
#include "nlohmann/json.hpp"
#include "testing/model_paths.h"
#include "testing/tiny_model.h"

namespace tandem {
namespace {

constexpr int kBlockSize = 16;

std::unique_ptr<Backend> MakeCuda() {
  auto b = cuda::CreateCudaBackend({});
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? std::move(*b) : nullptr;
}

std::unique_ptr<Backend> MakeCpu() { return std::move(*cpu::CpuBackend::Create({.threads = 2})); }

// One sequence run step by step on one backend: the prompt in chunks of `chunk` rows, then one
// row per step. Blocks are 0, 1, 2, ... so slot = position.
class SequenceRunner {
 public:
  SequenceRunner(const gguf::GgufFile& file, std::unique_ptr<Backend> backend) : backend_(std::move(backend)) {
    auto model = LlamaModel::Load(file, *backend_);
    EXPECT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    auto cache = backend_->CreateKvCache(model_->kv_layout(kBlockSize), 64);
    EXPECT_TRUE(cache.ok()) << cache.status();
    cache_ = std::move(*cache);
  }
  int vocab() const { return model_->config().vocab_size; }
  Backend& backend() { return *backend_; }

  // Runs `tokens` (continuing the sequence) in chunks; returns the last row's logits.
  std::vector<float> Run(const std::vector<int32_t>& tokens, int chunk) {
    std::vector<float> logits(vocab());
    for (size_t begin = 0; begin < tokens.size(); begin += chunk) {
      const int n = static_cast<int>(std::min<size_t>(chunk, tokens.size() - begin));
      ForwardBatch b;
      for (int i = 0; i < n; ++i) {
        b.tokens.push_back(tokens[begin + i]);
        b.positions.push_back(len_ + i);
        b.slot_mapping.push_back(len_ + i);
      }
      len_ += n;
      ForwardSequence s;
      s.query_start = 0;
      s.query_len = n;
      s.context_len = len_;
      for (int blk = 0; blk * kBlockSize < len_; ++blk) s.block_table.push_back(blk);
      b.sequences.push_back(s);
      b.logit_rows = {n - 1};
      const absl::Status st = model_->Forward(b, *cache_, logits.data());
      EXPECT_TRUE(st.ok()) << st;
    }
    return logits;
  }

 private:
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<KvCacheStorage> cache_;
  int len_ = 0;
};

struct Compare {
  double rel_l2 = 0, max_abs = 0;
};
Compare CompareLogits(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  Compare c;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (got[i] - ref[i]) * double{got[i] - ref[i]};
    den += ref[i] * double{ref[i]};
    c.max_abs = std::max(c.max_abs, double{std::abs(got[i] - ref[i])});
  }
  c.rel_l2 = std::sqrt(num / std::max(den, 1e-30));
  return c;
}

float TopGap(const std::vector<float>& logits) {
  std::vector<float> v = logits;
  std::partial_sort(v.begin(), v.begin() + 2, v.end(), std::greater<>());
  return v[0] - v[1];
}

void TeacherForced(const synth::SyntheticModelSpec& spec, int chunk, double tol = 3e-2) {
  auto file = std::move(*gguf::GgufFile::Open(testing::TinyModelPath(spec)));
  SequenceRunner cpu(*file, MakeCpu()), gpu(*file, MakeCuda());
  std::mt19937 rng(7);
  std::vector<int32_t> prompt(45);
  for (auto& t : prompt) t = 3 + static_cast<int32_t>(rng() % 250);
  std::vector<float> lc = cpu.Run(prompt, chunk), lg = gpu.Run(prompt, chunk);
  int agree = 0, steps = 0;
  double worst = 0;
  for (int step = 0; step < 24; ++step, ++steps) {
    const Compare c = CompareLogits(lg, lc);
    worst = std::max(worst, c.rel_l2);
    const int32_t tc = ArgMax(lc), tg = ArgMax(lg);
    EXPECT_LE(c.rel_l2, tol) << spec.name << " step " << step;
    if (tc != tg) {
      EXPECT_LT(TopGap(lc), 2 * c.max_abs) << spec.name << " step " << step << ": greedy " << tg << " vs cpu " << tc
                                           << " and not a near-tie";
    } else {
      ++agree;
    }
    lc = cpu.Run({tc}, 1);  // both follow the CPU's tokens (teacher forcing)
    lg = gpu.Run({tc}, 1);
  }
  std::printf("[%s, chunk %d] greedy agreement %d/%d, worst relative L2 %.2e\n", spec.name.c_str(), chunk, agree,
              steps, worst);
}

class CudaModelTest : public ::testing::Test {
 protected:
  void SetUp() override { TANDEM_GPU_OR_SKIP(); }
};

TEST_F(CudaModelTest, F32TinyModelLogitsMatchCpu) {
  synth::SyntheticModelSpec spec;
  spec.name = "tiny-f32";
  spec.weight_type = gguf::GgmlType::kF32;
  spec.embedding_type = gguf::GgmlType::kF32;
  TeacherForced(spec, 16);  // chunked prefill: 16 + 16 + 13 rows
  TeacherForced(spec, 64);  // one chunk
}

// qwen2 (Q/K/V and output biases, NEOX RoPE) and llama3 (untied output) on the GPU: the bias
// kernel and the NEOX pairing against the CPU backend, which llama.cpp's goldens check.
TEST_F(CudaModelTest, Qwen2AndLlama3ModelLogitsMatchCpu) {
  for (const char* arch : {"qwen2", "llama3"}) {
    synth::SyntheticModelSpec spec;
    spec.name = std::string("tiny-f32-") + arch;
    spec.arch = arch;
    spec.weight_type = gguf::GgmlType::kF32;
    spec.embedding_type = gguf::GgmlType::kF32;
    TeacherForced(spec, 16);
  }
}

TEST_F(CudaModelTest, SmallQuantizedModelLogitsMatchCpu) {
  // Q4_1 weights: both backends see the same dequantized weights, but the CPU quantizes
  // activations to 8 bits per 32 values where the GPU rounds them to bf16, so the logits
  // differ more: 1e-1 relative (a bound not yet measured on a GPU; tighten it from the first
  // run's printout).
  auto spec = *synth::SyntheticModelSpec::Named("small");
  TeacherForced(spec, 32, 1e-1);
}

TEST_F(CudaModelTest, EngineRunsMixedBatchesToCompletion) {
  // Several requests at once with a small token budget: prefill chunks and decodes share
  // iterations (mixed batches through both attention kernels). Every request must finish
  // with all its tokens; the greedy agreement with the CPU engine is reported.
  auto file = std::move(*gguf::GgufFile::Open(testing::TinyModelPath()));
  auto run = [&](std::unique_ptr<Backend> backend) {
    EngineOptions o;
    o.num_kv_blocks = 256;
    o.block_size = kBlockSize;
    o.scheduler.token_budget = 24;
    o.scheduler.max_num_seqs = 8;
    auto engine = Engine::Create(*file, std::move(backend), o);
    EXPECT_TRUE(engine.ok()) << engine.status();
    std::map<std::string, std::vector<int32_t>> out;
    if (!engine.ok()) return out;
    std::mt19937 rng(3);
    for (int i = 0; i < 4; ++i) {
      GenerateRequest r;
      r.id = "r" + std::to_string(i);
      r.prompt.resize(10 + 17 * i);
      for (auto& t : r.prompt) t = 3 + static_cast<int32_t>(rng() % 250);
      r.sampling.temperature = 0;
      r.sampling.max_tokens = 16;
      r.sampling.ignore_eos = true;
      EXPECT_TRUE((*engine)->Add(r).ok());
    }
    while ((*engine)->HasWork()) {
      auto step = (*engine)->Step();
      EXPECT_TRUE(step.ok()) << step.status();
      if (!step.ok()) break;
      for (const auto& o : *step) out[o.id].insert(out[o.id].end(), o.new_tokens.begin(), o.new_tokens.end());
    }
    return out;
  };
  auto gpu = run(MakeCuda()), cpu = run(MakeCpu());
  for (const auto& [id, tokens] : cpu) {
    ASSERT_EQ(gpu[id].size(), 16u) << id;
    size_t prefix = 0;
    while (prefix < tokens.size() && tokens[prefix] == gpu[id][prefix]) ++prefix;
    std::printf("[engine] %s: %zu/16 greedy tokens equal to the CPU engine's\n", id.c_str(), prefix);
  }
}

TEST_F(CudaModelTest, DecodeGraphsGiveTheSameLogitsAsEagerRuns) {
  // Graphs on: the first one-row decode runs eagerly (warm-up), the second is captured, the
  // rest replay with new positions, slots and block tables each time. Same kernels, same
  // arguments: the logits must agree with a backend without graphs to f32 rounding.
  auto file = std::move(*gguf::GgufFile::Open(testing::TinyModelPath()));
  cuda::CudaBackendOptions with_graphs;
  with_graphs.cuda_graphs = true;
  auto graphed = cuda::CudaBackend::Create(with_graphs);
  ASSERT_TRUE(graphed.ok()) << graphed.status();
  auto* g = graphed->get();
  SequenceRunner eager(*file, MakeCuda()), graph(*file, std::move(*graphed));
  std::vector<int32_t> prompt = {5, 17, 99, 3, 42, 8, 250, 11, 64, 7, 19, 23, 200, 31, 2, 77, 45};
  std::vector<float> le = eager.Run(prompt, 8), lg = graph.Run(prompt, 8);
  for (int step = 0; step < 40; ++step) {  // crosses block boundaries (block size 16)
    const Compare c = CompareLogits(lg, le);
    EXPECT_LE(c.rel_l2, 1e-5) << "step " << step;
    const int32_t next = ArgMax(le);
    le = eager.Run({next}, 1);
    lg = graph.Run({next}, 1);
  }
  EXPECT_GE(g->graph_captures(), 1);
  EXPECT_GE(g->graph_replays(), 30);
  std::printf("[graphs] captures %lld replays %lld\n", static_cast<long long>(g->graph_captures()),
              static_cast<long long>(g->graph_replays()));
}

// Greedy generation of the bundled model (Q4_1) against llama.cpp's goldens: the matching
// prefix per prompt is reported; a divergence must happen where llama.cpp's own top-1/top-2
// gap is under 1.0 (bf16 weights and activations move logits by a few hundredths to tenths).
TEST_F(CudaModelTest, BundledModelGreedyMatchesLlamaCppGoldens) {
  TANDEM_MODEL_PATH_OR_SKIP(path);
  std::ifstream in(std::string(TANDEM_SOURCE_DIR) + "/tests/data/goldens/smollm2_q4_1_generation.json");
  ASSERT_TRUE(in.good());
  const auto goldens = nlohmann::json::parse(in);
  auto file = gguf::GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EngineOptions o;
  o.kv_cache_bytes = 256LL << 20;
  auto engine = Engine::Create(**file, MakeCuda(), o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  int total_match = 0, total = 0;
  for (const auto& p : goldens["prompts"]) {
    GenerateRequest r;
    r.id = p["name"];
    r.prompt = p["prompt_tokens"].get<std::vector<int32_t>>();
    const auto want = p["generated"].get<std::vector<int32_t>>();
    r.sampling.temperature = 0;
    r.sampling.max_tokens = static_cast<int>(want.size());
    r.sampling.ignore_eos = true;
    ASSERT_TRUE((*engine)->Add(r).ok());
    std::vector<int32_t> got;
    while ((*engine)->HasWork()) {
      auto step = (*engine)->Step();
      ASSERT_TRUE(step.ok()) << step.status();
      for (const auto& out : *step) got.insert(got.end(), out.new_tokens.begin(), out.new_tokens.end());
    }
    size_t prefix = 0;
    while (prefix < want.size() && prefix < got.size() && want[prefix] == got[prefix]) ++prefix;
    std::printf("[goldens] %-24s matching prefix %zu/%zu\n", r.id.c_str(), prefix, want.size());
    total_match += static_cast<int>(prefix);
    total += static_cast<int>(want.size());
    if (prefix < want.size()) {
      const auto& s = p["steps"][prefix];
      const float gap = s[1].get<float>() - s[3].get<float>();
      EXPECT_LT(gap, 1.0f) << r.id << ": diverged at token " << prefix << " where llama.cpp's top-1 led by " << gap;
    }
  }
  std::printf("[goldens] total matching %d/%d tokens\n", total_match, total);
}

}  // namespace
}  // namespace tandem
