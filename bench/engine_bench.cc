// CPU engine throughput: prefill tokens/s for one 512-token prompt, and decode tokens/s with
// 1, 8 and 32 sequences decoding together. Prints one JSON object (bench/run_cpu_bench.sh puts
// it next to llama.cpp's numbers and the memory-bandwidth roofline from the same run), with the
// weight bytes one decode step reads: the roofline's bytes per token.
//
// usage: engine_bench --model PATH [--threads N] [--prompt-tokens 512] [--decode-steps 64]
//                     [--decode-context 32] [--repeats 3] [--batches 1,8,32]
// --decode-context: each decoding sequence's prompt length (its context when decode starts;
// attention reads context + step keys per token).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/backends/cpu/cpu_backend.h"
#include "engine/engine.h"
#include "nlohmann/json.hpp"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string model;
  int threads = 0;
  int prompt_tokens = 512;
  int decode_steps = 64;
  int decode_context = 32;
  int repeats = 3;
  std::vector<int> batches = {1, 8, 32};
};

std::vector<int32_t> Tokens(int n, uint32_t seed, int vocab) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = 100 + static_cast<int32_t>(rng() % (vocab - 200));
  return t;
}

std::unique_ptr<Engine> MakeEngine(const gguf::GgufFile& file, const Args& a) {
  auto backend = cpu::CpuBackend::Create({.threads = a.threads});
  if (!backend.ok()) {
    std::fprintf(stderr, "%s\n", backend.status().ToString().c_str());
    std::exit(1);
  }
  EngineOptions o;
  o.kv_cache_bytes = 512LL << 20;
  o.enable_prefix_cache = false;  // every repeat computes its prompt
  o.scheduler.token_budget = std::max(a.prompt_tokens, 512);
  o.scheduler.max_num_seqs = 64;
  auto engine = Engine::Create(file, std::move(*backend), o);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(*engine);
}

void RunToEnd(Engine& e) {
  while (e.HasWork()) {
    if (!e.Step().ok()) std::exit(1);
  }
}

// Seconds for one prefill of `prompt_tokens` (the step that produces the first token).
double Prefill(Engine& e, const Args& a, int rep) {
  GenerateRequest r;
  r.id = "prefill-" + std::to_string(rep);
  r.prompt = Tokens(a.prompt_tokens, 1000 + rep, e.model_config().vocab_size);
  r.sampling.temperature = 0;
  r.sampling.max_tokens = 1;
  r.sampling.ignore_eos = true;
  if (!e.Add(r).ok()) std::exit(1);
  const auto t0 = Clock::now();
  RunToEnd(e);
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Decode tokens/s with `batch` sequences (short prompts, prefilled before timing).
double Decode(Engine& e, const Args& a, int batch, int rep) {
  for (int i = 0; i < batch; ++i) {
    GenerateRequest r;
    r.id = "decode-" + std::to_string(rep) + "-" + std::to_string(i);
    r.prompt = Tokens(a.decode_context, 2000 + 97 * rep + i, e.model_config().vocab_size);
    r.sampling.temperature = 0;
    r.sampling.max_tokens = a.decode_steps + 2;
    r.sampling.ignore_eos = true;
    if (!e.Add(r).ok()) std::exit(1);
  }
  // Prefill every prompt and take one decode step outside the timing (from the second repeat on
  // the counter starts above 0: wait for it to move, or the prefill would be timed as decode).
  const int64_t decoded_before_prefill = e.counters().decode_tokens;
  while (e.counters().decode_tokens == decoded_before_prefill || e.last_step().num_prefill_tokens > 0) {
    if (!e.Step().ok()) std::exit(1);
  }
  const int64_t before = e.counters().decode_tokens;
  const auto t0 = Clock::now();
  for (int s = 0; s < a.decode_steps; ++s) {
    if (!e.Step().ok()) std::exit(1);
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  const int64_t tokens = e.counters().decode_tokens - before;
  RunToEnd(e);
  return tokens / secs;
}

// Bytes of the GGUF's tensors that one decode step reads whatever the implementation: every
// tensor but the token embedding, of which a step reads one row per token (unless it doubles
// as the output matrix, which is read whole).
int64_t GgufBytesPerDecodeStep(const gguf::GgufFile& file, bool tied_embeddings) {
  int64_t bytes = 0;
  for (const gguf::TensorInfo& t : file.tensors()) {
    if (t.name != "token_embd.weight" || tied_embeddings) bytes += t.num_bytes;
  }
  return bytes;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace
}  // namespace tandem

int main(int argc, char** argv) {
  using namespace tandem;
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--model") a.model = next();
    else if (k == "--threads") a.threads = std::atoi(next().c_str());
    else if (k == "--prompt-tokens") a.prompt_tokens = std::atoi(next().c_str());
    else if (k == "--decode-steps") a.decode_steps = std::atoi(next().c_str());
    else if (k == "--decode-context") a.decode_context = std::atoi(next().c_str());
    else if (k == "--repeats") a.repeats = std::atoi(next().c_str());
    else if (k == "--batches") {
      a.batches.clear();
      std::string s = next();
      for (size_t p = 0; p < s.size();) {
        const size_t c = s.find(',', p);
        a.batches.push_back(std::atoi(s.substr(p, c - p).c_str()));
        p = c == std::string::npos ? s.size() : c + 1;
      }
    } else {
      std::fprintf(stderr, "usage: engine_bench --model PATH [--threads N] [--prompt-tokens N] "
                           "[--decode-steps N] [--decode-context N] [--repeats N] [--batches 1,8,32]\n");
      return 2;
    }
  }
  if (a.model.empty()) {
    std::fprintf(stderr, "engine_bench: --model is required\n");
    return 2;
  }
  if (a.decode_context < 1 || a.decode_steps < 1 || a.repeats < 1) {
    std::fprintf(stderr, "engine_bench: --decode-context, --decode-steps and --repeats must be at least 1\n");
    return 2;
  }
  auto file = gguf::GgufFile::Open(a.model);
  if (!file.ok()) {
    std::fprintf(stderr, "%s\n", file.status().ToString().c_str());
    return 1;
  }
  auto engine = MakeEngine(**file, a);
  Prefill(*engine, a, -1);  // warm-up: pages in the weights
  nlohmann::json out;
  out["implementation"] = "tandem";
  out["isa"] = std::string(cpu::IsaName(cpu::BestIsa()));
  out["threads"] = static_cast<cpu::CpuBackend&>(engine->backend()).threads();
  out["gguf_bytes_per_decode_step"] =
      GgufBytesPerDecodeStep(**file, engine->model_config().tied_embeddings);
  out["resident_weight_bytes"] = engine->weight_bytes();  // after any repacking by the backend
  std::vector<double> prefill;
  for (int r = 0; r < a.repeats; ++r) prefill.push_back(a.prompt_tokens / Prefill(*engine, a, r));
  out["prefill_tokens_per_s"] = Median(prefill);
  out["prefill_prompt_tokens"] = a.prompt_tokens;
  out["decode_context"] = a.decode_context;
  for (int b : a.batches) {
    std::vector<double> v;
    for (int r = 0; r < a.repeats; ++r) v.push_back(Decode(*engine, a, b, r));
    out["decode_tokens_per_s"][std::to_string(b)] = Median(v);
  }
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
