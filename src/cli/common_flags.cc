#include "cli/common_flags.h"

#include <chrono>

#include "absl/strings/numbers.h"
#include "cli/environment.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/backends/cpu/cpu_backend.h"
#include "engine/backends/cuda/cuda_backend_factory.h"
#include "modelstore/model_store.h"
#include "sim/profiler.h"

namespace tandem::cli {

void EngineFlags::Register(FlagSet& f) {
  f.String("model", &model, "GGUF model file (default: the bundled SmolLM2-135M-Instruct, fetched when missing)");
  f.Int("threads", &threads, "compute threads (0 = one per CPU)");
  f.Int("kv-cache-mb", &kv_cache_mb, "KV cache size in MiB");
  f.Int("block-size", &block_size, "tokens per KV cache block");
  f.String("token-budget", &token_budget,
           "tokens per iteration (chunked-prefill budget), or auto: measured at start-up (a few seconds), the "
           "largest power of two whose iteration - 8 sequences decoding at 1024 tokens of context plus a prefill "
           "chunk - is predicted to take at most --budget-itl-ms");
  f.Float("budget-itl-ms", &budget_itl_ms, "the inter-token latency --token-budget auto keeps an iteration under, ms");
  f.Int("max-num-seqs", &max_num_seqs, "sequences per iteration");
  f.Int("max-model-len", &max_model_len, "context length limit (0 = the model's)");
  f.Bool("prefix-cache", &prefix_cache, "reuse KV blocks of shared prompt prefixes");
  f.String("isa", &isa, "CPU kernels to use at most: scalar, avx2 or avx512 (default: $TANDEM_CPU_ISA, else the best available)");
  f.String("device", &device, "where the model runs: cpu, or cuda (weights in bf16 on the GPU; built with CUDA only)");
  f.Int("cuda-device", &cuda_device, "CUDA device ordinal for --device cuda");
  f.Bool("cuda-graphs", &cuda_graphs, "capture decode iterations as CUDA graphs (--device cuda)");
  f.Int("speculative-ngram", &speculative_ngram,
        "speculative decoding by prompt lookup: propose up to this many tokens per step, copied from where the "
        "last 2-3 tokens occurred earlier in the prompt or output, and verify them in one pass (0 = off, up to "
        "64; 3 measured best on a 2-core CPU). The output is the same either way; it is faster when answers "
        "copy their input (edits, summaries, code), and drafting fades where guesses fail "
        "(--speculative-draft-cost)");
  f.Int("speculative-max-batch", &speculative_max_batch,
        "propose drafts only while at most this many sequences are decoding (a bigger batch already "
        "reads the weights once per step for many tokens)");
  f.Float("speculative-draft-cost", &speculative_draft_cost,
          "what one draft token costs, as a fraction of a decode iteration: each sequence drafts the i-th token "
          "only while (its share of kept draft tokens)^i is at least this, so drafting fades where guesses fail "
          "(0: always --speculative-ngram tokens). 0.25 was measured on a 2-core CPU");
}

EngineOptions EngineFlags::ToEngineOptions() const {
  EngineOptions o;
  o.block_size = block_size;
  o.kv_cache_bytes = kv_cache_mb << 20;
  o.max_model_len = max_model_len;
  o.enable_prefix_cache = prefix_cache;
  int budget = 512;
  if (absl::SimpleAtoi(token_budget, &budget) && budget > 0) o.scheduler.token_budget = budget;
  o.scheduler.max_num_seqs = max_num_seqs;
  o.speculative.num_draft_tokens = speculative_ngram;
  o.speculative.max_decoding = speculative_max_batch;
  o.speculative.draft_cost = speculative_draft_cost;
  return o;
}

absl::StatusOr<std::string> ResolveModelPath(const std::string& model_flag) {
  if (!model_flag.empty()) return model_flag;
  ModelStore store(ModelStoreOptionsFromEnvironment());
  return store.Ensure(DefaultBundledModel());
}

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const EngineFlags& flags) {
  if (flags.device == "cuda") {
    cuda::CudaBackendOptions o;
    o.device = flags.cuda_device;
    o.cuda_graphs = flags.cuda_graphs;
    return cuda::CreateCudaBackend(o);
  }
  if (flags.device != "cpu") {
    return absl::InvalidArgumentError(StrCat("--device must be cpu or cuda, not '", flags.device, "'"));
  }
  cpu::CpuBackendOptions o;
  o.threads = flags.threads;
  // --isa, else $TANDEM_CPU_ISA: the most capable kernels to use (fewer if the CPU lacks them).
  const std::string isa = flags.isa.empty() ? Env("TANDEM_CPU_ISA") : flags.isa;
  if (isa.empty()) {
    o.isa = cpu::BestIsa();
  } else if (isa == "scalar") {
    o.isa = cpu::BestIsa(cpu::Isa::kScalar);
  } else if (isa == "avx2") {
    o.isa = cpu::BestIsa(cpu::Isa::kAvx2);
  } else if (isa == "avx512") {
    o.isa = cpu::BestIsa(cpu::Isa::kAvx512);
  } else {
    return absl::InvalidArgumentError(StrCat("--isa must be scalar, avx2 or avx512, not '", isa, "'"));
  }
  auto backend = cpu::CpuBackend::Create(o);
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<Backend>(std::move(*backend));
}

namespace {

// --token-budget auto: a short start-up profile of this engine (sim/profiler.h) and the budget
// its fitted cost allows under the ITL target.
absl::StatusOr<int> PickBudgetAtStartUp(const EngineFlags& flags, const gguf::GgufFile& file) {
  const sim::ProfileOptions o = sim::ProfileOptions::StartUp();
  TANDEM_ASSIGN_OR_RETURN(auto backend, MakeBackend(flags));
  EngineOptions eo = flags.ToEngineOptions();
  eo.enable_prefix_cache = true;
  eo.scheduler.token_budget = sim::ProfileTokenBudget(o);
  eo.scheduler.max_num_seqs = 64;
  eo.num_kv_blocks = (sim::ProfileKvTokens(o) + eo.block_size - 1) / eo.block_size + 16;
  TANDEM_ASSIGN_OR_RETURN(auto engine, Engine::Create(file, std::move(backend), eo));
  const auto start = std::chrono::steady_clock::now();
  TANDEM_ASSIGN_OR_RETURN(sim::WorkerProfile profile, sim::ProfileEngine(*engine, o));
  const std::optional<int> budget = sim::PickTokenBudget(profile.cost, flags.budget_itl_ms / 1e3,
                                                        sim::PowerOfTwoBudgets(4096), /*decodes=*/8, /*context=*/1024);
  GetLogger("engine")->info("--token-budget auto: {} tokens per iteration for an ITL of {} ms ({} iterations profiled in "
                      "{:.1f} s, fit error {:.1f}%)",
                      budget.value_or(16), flags.budget_itl_ms, profile.samples.size(),
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                      100 * profile.fit.mean_abs_rel_error);
  return budget.value_or(16);
}

}  // namespace

absl::Status EngineFlags::Check() const {
  int budget = 0;
  if (token_budget != "auto" && (!absl::SimpleAtoi(token_budget, &budget) || budget < 1)) {
    return absl::InvalidArgumentError(StrCat("--token-budget must be a count >= 1 or auto, not '", token_budget, "'"));
  }
  if (!(budget_itl_ms > 0)) return absl::InvalidArgumentError("--budget-itl-ms must be > 0");
  if (speculative_ngram < 0 || speculative_ngram > 64) {
    return absl::InvalidArgumentError(StrCat("--speculative-ngram must be between 0 (off) and 64, not ", speculative_ngram));
  }
  if (!(speculative_draft_cost >= 0 && speculative_draft_cost < 1)) {
    return absl::InvalidArgumentError(StrCat("--speculative-draft-cost must be in [0, 1), not ", speculative_draft_cost));
  }
  if (speculative_max_batch < 1) {
    return absl::InvalidArgumentError(StrCat("--speculative-max-batch must be >= 1, not ", speculative_max_batch));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Engine>> MakeEngineFor(const EngineFlags& flags, const gguf::GgufFile& file,
                                                      const text::Tokenizer& tokenizer) {
  return MakeEngine(flags, file, tokenizer.eog_ids(), tokenizer.AllPieces());
}

absl::StatusOr<std::unique_ptr<Engine>> MakeEngine(const EngineFlags& flags, const gguf::GgufFile& file,
                                                   std::vector<int32_t> eog_token_ids,
                                                   std::vector<std::string> token_pieces) {
  TANDEM_RETURN_IF_ERROR(flags.Check());
  EngineOptions options = flags.ToEngineOptions();
  if (flags.token_budget == "auto") {
    TANDEM_ASSIGN_OR_RETURN(options.scheduler.token_budget, PickBudgetAtStartUp(flags, file));
  }
  auto backend = MakeBackend(flags);
  if (!backend.ok()) return backend.status();
  options.eog_token_ids = std::move(eog_token_ids);
  options.token_pieces = std::move(token_pieces);
  options.scheduler.max_num_seqs = std::max(1, options.scheduler.max_num_seqs);
  return Engine::Create(file, std::move(*backend), options);
}

}  // namespace tandem::cli
