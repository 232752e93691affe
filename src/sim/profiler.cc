#include "sim/profiler.h"

#include <algorithm>
#include <random>

#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem::sim {
namespace {

class Runner {
 public:
  Runner(Engine& engine, const ProfileOptions& options)
      : e_(engine), o_(options), rng_(options.seed), vocab_(engine.model_config().vocab_size) {}

  std::vector<int32_t> Prompt(int n) {
    std::vector<int32_t> t(n);
    for (auto& x : t) x = static_cast<int32_t>(rng_() % static_cast<uint32_t>(vocab_));
    return t;
  }

  absl::Status Add(std::vector<int32_t> prompt, int max_tokens) {
    GenerateRequest r;
    r.id = StrCat("profile-", next_id_++);
    r.prompt = std::move(prompt);
    r.sampling.temperature = 0;
    r.sampling.max_tokens = max_tokens;
    r.sampling.ignore_eos = true;
    return e_.Add(std::move(r));
  }

  // One iteration; keeps it as a sample unless `keep` is false.
  absl::Status Step(bool keep = true) {
    TANDEM_ASSIGN_OR_RETURN(auto outputs, e_.Step());
    (void)outputs;
    const StepStats& s = e_.last_step();
    if (keep && s.shape.tokens > 0 && s.seconds > 0) {
      IterationSample sample;
      sample.shape = s.shape;
      sample.seconds = s.seconds;
      sample.kind = s.shape.sampled == s.shape.tokens ? "decode" : s.shape.sequences == 1 ? "prefill" : "mixed";
      samples_.push_back(sample);
    }
    return absl::OkStatus();
  }

  absl::Status RunToEnd(bool keep = true) {
    while (e_.HasWork()) TANDEM_RETURN_IF_ERROR(Step(keep));
    return absl::OkStatus();
  }

  void Progress(const std::string& what) {
    if (o_.progress) o_.progress(what);
  }

  absl::Status Prefill() {
    const int bs = e_.block_size();
    int done = 0;
    const int total = static_cast<int>(o_.contexts.size() * o_.chunk_sizes.size());
    for (int k : o_.contexts) {
      const int context = k / bs * bs;  // a whole number of blocks, so all of it is a cache hit
      for (int rep = 0; rep < o_.repeats; ++rep) {
        const std::vector<int32_t> prefix = Prompt(context);
        if (context > 0) {
          TANDEM_RETURN_IF_ERROR(Add(prefix, 1));
          TANDEM_RETURN_IF_ERROR(RunToEnd());
        }
        for (size_t i = 0; i < o_.chunk_sizes.size(); ++i) {
          if (rep == 0) Progress(StrCat("prefill chunk ", o_.chunk_sizes[i], " after ", context, " tokens (", ++done, "/", total, ")"));
          std::vector<int32_t> prompt = prefix;
          const std::vector<int32_t> chunk = Prompt(o_.chunk_sizes[i]);
          prompt.insert(prompt.end(), chunk.begin(), chunk.end());
          TANDEM_RETURN_IF_ERROR(Add(std::move(prompt), 1));
          TANDEM_RETURN_IF_ERROR(RunToEnd());
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status Decode() {
    std::vector<std::pair<int, int>> runs;
    for (int l : o_.decode_contexts) {
      for (int b : o_.batches) {
        if (static_cast<int64_t>(b) * l <= o_.max_batch_tokens) runs.emplace_back(b, l);
      }
    }
    int done = 0;
    for (auto [b, l] : runs) {
      Progress(StrCat("decode batch ", b, " at context ", l, " (", ++done, "/", runs.size(), ")"));
      for (int rep = 0; rep < o_.repeats; ++rep) {
        for (int i = 0; i < b; ++i) TANDEM_RETURN_IF_ERROR(Add(Prompt(l), o_.decode_steps + 2));
        TANDEM_RETURN_IF_ERROR(RunToEnd());
      }
    }
    return absl::OkStatus();
  }

  absl::Status Mixed() {
    int done = 0;
    const int total = static_cast<int>(o_.mixed_batches.size() * o_.mixed_chunks.size());
    for (int b : o_.mixed_batches) {
      for (int c : o_.mixed_chunks) {
        Progress(StrCat("mixed: batch ", b, " decoding + a ", c, "-token chunk (", ++done, "/", total, ")"));
        for (int rep = 0; rep < o_.repeats; ++rep) {
          for (int i = 0; i < b; ++i) TANDEM_RETURN_IF_ERROR(Add(Prompt(64), o_.decode_steps + 4));
          // Until every sequence decodes, then one iteration with the chunk alongside.
          for (int guard = 0; guard < 1000 && (e_.last_step().num_prefill_tokens > 0 || e_.last_step().num_decode_tokens < b);
               ++guard) {
            TANDEM_RETURN_IF_ERROR(Step());
          }
          TANDEM_RETURN_IF_ERROR(Add(Prompt(c), 1));
          TANDEM_RETURN_IF_ERROR(RunToEnd());
        }
      }
    }
    return absl::OkStatus();
  }

  std::vector<IterationSample>& samples() { return samples_; }

 private:
  Engine& e_;
  const ProfileOptions& o_;
  std::mt19937 rng_;
  int vocab_;
  int next_id_ = 0;
  std::vector<IterationSample> samples_;
};

}  // namespace

ProfileOptions ProfileOptions::Quick() {
  ProfileOptions o;
  o.chunk_sizes = {16, 48};
  o.contexts = {0, 32};
  o.batches = {1, 4};
  o.decode_contexts = {24};
  o.mixed_batches = {2};
  o.mixed_chunks = {32};
  o.decode_steps = 3;
  o.repeats = 1;
  return o;
}

ProfileOptions ProfileOptions::StartUp() {
  ProfileOptions o;
  o.chunk_sizes = {64, 256};
  o.contexts = {0, 256};
  o.batches = {1, 8};
  o.decode_contexts = {128};
  o.mixed_batches = {4};
  o.mixed_chunks = {64};
  o.decode_steps = 3;
  o.repeats = 1;
  return o;
}

std::vector<int> PowerOfTwoBudgets(int max) {
  std::vector<int> out;
  for (int b = 16; b <= max; b *= 2) out.push_back(b);
  return out;
}

int64_t ProfileKvTokens(const ProfileOptions& o) {
  int64_t need = 0;
  const int max_chunk = o.chunk_sizes.empty() ? 0 : *std::max_element(o.chunk_sizes.begin(), o.chunk_sizes.end());
  for (int k : o.contexts) need = std::max<int64_t>(need, 2LL * k + max_chunk + 64);
  for (int l : o.decode_contexts) {
    for (int b : o.batches) {
      if (static_cast<int64_t>(b) * l <= o.max_batch_tokens) {
        need = std::max<int64_t>(need, static_cast<int64_t>(b) * (l + o.decode_steps + 2 + 16));
      }
    }
  }
  for (int b : o.mixed_batches) {
    for (int c : o.mixed_chunks) need = std::max<int64_t>(need, static_cast<int64_t>(b) * (64 + o.decode_steps + 4 + 16) + c + 16);
  }
  return need;
}

int ProfileTokenBudget(const ProfileOptions& o) {
  int budget = 16;
  for (int c : o.chunk_sizes) budget = std::max(budget, c);
  for (int b : o.mixed_batches) {
    for (int c : o.mixed_chunks) budget = std::max(budget, b + c);
  }
  return budget;
}

absl::StatusOr<WorkerProfile> ProfileEngine(Engine& engine, const ProfileOptions& options) {
  if (!engine.block_manager().prefix_cache_enabled()) {
    return absl::FailedPreconditionError("profiling needs the prefix cache on (it times chunks after cached prefixes)");
  }
  if (engine.scheduler().options().token_budget < ProfileTokenBudget(options)) {
    return absl::FailedPreconditionError(StrCat("profiling needs a token budget of at least ", ProfileTokenBudget(options)));
  }
  if (engine.block_manager().num_blocks() * engine.block_size() < ProfileKvTokens(options)) {
    return absl::FailedPreconditionError(StrCat("profiling needs a KV cache of at least ", ProfileKvTokens(options), " tokens"));
  }
  if (engine.HasWork()) return absl::FailedPreconditionError("the engine is busy");
  Runner run(engine, options);
  // Warm-up: page the weights in and settle the thread pool; not kept.
  TANDEM_RETURN_IF_ERROR(run.Add(run.Prompt(64), 4));
  TANDEM_RETURN_IF_ERROR(run.RunToEnd(/*keep=*/false));
  TANDEM_RETURN_IF_ERROR(run.Prefill());
  TANDEM_RETURN_IF_ERROR(run.Decode());
  TANDEM_RETURN_IF_ERROR(run.Mixed());
  WorkerProfile p;
  p.samples = std::move(run.samples());
  TANDEM_ASSIGN_OR_RETURN(p.cost, FitIterationCost(p.samples));
  p.fit = Evaluate(p.cost, p.samples);
  return p;
}

}  // namespace tandem::sim
