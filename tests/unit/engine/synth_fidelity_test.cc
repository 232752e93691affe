// Fidelity against llama.cpp for every model family tandem runs, without downloading a model:
// `tandem model synth --arch NAME` writes a random-weight GGUF with that family's metadata,
// special tokens, pre-tokenizer and chat template (llama: SmolLM2-style; llama3: llama-bpe, BOS,
// header/eot template; llama-spm: SentencePiece vocabulary, [INST] template; qwen2: Q/K/V and
// output biases, NEOX RoPE, qwen2 pre-tokenizer, ChatML with a default system prompt;
// deepseek-r1-qwen: qwen2 weights, BOS, DeepSeek-R1's <｜User｜>/<｜Assistant｜> template). llama.cpp ran the same bytes (tools/goldens/synth_goldens.py)
// and recorded prompt tokens, greedy tokens and teacher-forced logits. F32 weights: neither side
// quantizes activations, so the two must agree closely.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>

#include "common/mapped_file.h"
#include "common/sha256.h"
#include "engine/backends/cpu/cpu_backend.h"
#include "engine/engine.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "testing/fidelity_goldens.h"
#include "testing/tiny_model.h"
#include "text/text_model.h"

namespace tandem {
namespace {

using Golden = testing::FidelityGolden;

struct Fixture {
  nlohmann::json meta;
  std::vector<Golden> goldens;
  std::string path;
  std::unique_ptr<gguf::GgufFile> file;
  text::TextModel text;
  std::unique_ptr<Engine> engine;
};

// The spec synth_goldens.py passes to `tandem model synth` (SYNTH_FLAGS there).
synth::SyntheticModelSpec GoldenSpec(const std::string& arch) {
  auto spec = *synth::SyntheticModelSpec::Named("small");
  spec.arch = arch;
  spec.weight_type = gguf::GgmlType::kF32;
  spec.embedding_type = gguf::GgmlType::kF32;
  spec.seed = 7;
  return spec;
}

Fixture* GetFixture(const std::string& arch) {
  static std::map<std::string, std::unique_ptr<Fixture>> fixtures;
  if (auto it = fixtures.find(arch); it != fixtures.end()) return it->second.get();
  auto f = std::make_unique<Fixture>();
  std::ifstream in(std::string(TANDEM_SOURCE_DIR) + "/tests/data/goldens/synth_" + arch + "_generation.json");
  EXPECT_TRUE(in.good()) << arch;
  if (!in.good()) return nullptr;
  const auto j = nlohmann::json::parse(in);
  f->meta = j["meta"];
  f->goldens = testing::ParseFidelityGoldens(j);
  f->path = testing::TinyModelPath(GoldenSpec(arch));
  auto file = gguf::GgufFile::Open(f->path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return nullptr;
  f->file = std::move(*file);
  auto text = text::LoadTextModel(*f->file);
  EXPECT_TRUE(text.ok()) << text.status();
  if (!text.ok()) return nullptr;
  f->text = std::move(*text);
  auto backend = cpu::CpuBackend::Create({});
  EngineOptions options;
  options.kv_cache_bytes = 64LL << 20;
  auto engine = Engine::Create(*f->file, std::move(*backend), options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return nullptr;
  f->engine = std::move(*engine);
  return (fixtures[arch] = std::move(f)).get();
}

class SynthFidelityTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    fx_ = GetFixture(GetParam());
    ASSERT_NE(fx_, nullptr);
    ASSERT_GE(fx_->goldens.size(), 10u);
  }
  Fixture* fx_ = nullptr;
};

// The goldens were computed on these exact bytes: a change to the synthesizer must come with
// regenerated goldens, and this says so instead of failing on logits.
TEST_P(SynthFidelityTest, TheSynthesizedFileIsTheOneLlamaCppRan) {
  auto mapped = MappedFile::Open(fx_->path);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ(ToHex(Sha256::Of((*mapped)->data(), (*mapped)->size())), fx_->meta["model_sha256"].get<std::string>())
      << "tandem model synth --arch " << GetParam()
      << " writes different bytes: rerun tools/goldens/synth_goldens.py";
  EXPECT_EQ(fx_->engine->model_config().vocab_size, fx_->meta["n_vocab"].get<int>());
}

// Text prompts with the model's BOS rule, chat prompts through its chat template.
TEST_P(SynthFidelityTest, PromptTokensMatchLlamaCpp) {
  const text::Tokenizer& tok = *fx_->text.tokenizer;
  for (const Golden& g : fx_->goldens) {
    std::vector<int32_t> mine;
    if (g.kind == "text") {
      mine = tok.Encode(g.text, /*add_special=*/true, /*parse_special=*/false);
    } else {
      std::vector<text::ChatMessage> messages;
      for (const auto& [role, content] : g.messages) messages.push_back({role, content});
      const text::RenderedChat chat = fx_->text.chat_template.Render(messages, true);
      mine = tok.EncodeChat(chat.text, chat.markup);
    }
    EXPECT_EQ(mine, g.prompt) << GetParam() << " " << g.name;
  }
}

TEST_P(SynthFidelityTest, TeacherForcedLogitsMatchLlamaCpp) {
  Engine& engine = *fx_->engine;
  const int vocab = engine.model_config().vocab_size;
  int64_t positions = 0, top1_equal = 0, compared = 0;
  double sum_abs = 0, max_abs = 0;
  for (const Golden& g : fx_->goldens) {
    std::vector<int32_t> seq = g.prompt;
    seq.insert(seq.end(), g.generated.begin(), g.generated.end());
    ASSERT_EQ(seq.size(), g.forced.size()) << g.name;
    auto logits = engine.ScoreTokens(seq);
    ASSERT_TRUE(logits.ok()) << logits.status();
    for (size_t i = 0; i < seq.size(); ++i) {
      const float* row = logits->data() + i * vocab;
      const int32_t top = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
      top1_equal += top == g.forced[i][0].first;
      for (const auto& [id, want] : g.forced[i]) {
        const double d = std::fabs(row[id] - want);
        sum_abs += d;
        max_abs = std::max(max_abs, d);
        ++compared;
      }
    }
    positions += static_cast<int64_t>(seq.size());
  }
  const double rate = static_cast<double>(top1_equal) / positions;
  std::printf("[%s] teacher-forced: %lld/%lld positions top-1 equal (%.3f%%); llama.cpp's top-5 logits: "
              "max |diff| %.4f, mean |diff| %.5f over %lld values\n",
              GetParam().c_str(), static_cast<long long>(top1_equal), static_cast<long long>(positions), 100 * rate,
              max_abs, sum_abs / compared, static_cast<long long>(compared));
  EXPECT_GE(rate, 0.99);
  EXPECT_LT(sum_abs / compared, 0.01);
  EXPECT_LT(max_abs, 0.1);
}

// Generation one token at a time through the engine's scheduler (prefill, then decode steps):
// the same greedy tokens, or a divergence only where llama.cpp's top two were nearly tied.
TEST_P(SynthFidelityTest, GreedyTokensMatchLlamaCpp) {
  std::map<std::string, std::vector<int32_t>> got = testing::RunGreedy(*fx_->engine, fx_->goldens);
  int identical = 0;
  for (const Golden& g : fx_->goldens) {
    const auto& mine = got[g.name];
    ASSERT_EQ(mine.size(), g.generated.size()) << g.name;
    size_t d = 0;
    while (d < mine.size() && mine[d] == g.generated[d]) ++d;
    if (d == mine.size()) {
      ++identical;
      continue;
    }
    const auto& step = g.steps[d];
    std::printf("[%s] %-15s diverges at step %zu: llama.cpp %d (%.4f), runner-up %d (%.4f); tandem %d\n",
                GetParam().c_str(), g.name.c_str(), d, static_cast<int>(step[0]), step[1], static_cast<int>(step[2]),
                step[3], mine[d]);
    EXPECT_LT(step[1] - step[3], 0.05f) << g.name << ": divergence where llama.cpp's top two were not nearly tied";
  }
  std::printf("[%s] greedy: %d/%zu prompts identical over %zu tokens\n", GetParam().c_str(), identical,
              fx_->goldens.size(), fx_->goldens[0].generated.size());
  EXPECT_GE(identical * 5, static_cast<int>(fx_->goldens.size()) * 4);  // >= 80%
}

INSTANTIATE_TEST_SUITE_P(Archs, SynthFidelityTest, ::testing::Values("llama", "llama3", "llama-spm", "qwen2", "deepseek-r1-qwen"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::erase(name, '-');
                           return name;
                         });

}  // namespace
}  // namespace tandem
