// `tandem profile` as a library: measures one engine's iteration times on controlled batches
// and fits the iteration cost model (sim/cost_model.h).
//
// Experiments (every engine iteration they run is a sample, labelled by its shape):
//   prefill  a chunk of C new tokens after K tokens already in the cache, for each C in
//            chunk_sizes and K in contexts (the K-token prefix is computed first and then hit in
//            the prefix cache, so the timed iteration computes exactly the C-token chunk);
//   decode   B sequences decoding together at context L, decode_steps iterations, for each B
//            in batches and L in decode_contexts with B x L <= max_batch_tokens;
//   mixed    B sequences decoding plus one prefill chunk of C tokens in the same iteration
//            (Sarathi-Serve's stall-free batches), for B in mixed_batches and C in mixed_chunks.
// Each experiment runs `repeats` times with fresh random prompts; the first run of the engine
// is a warm-up that is not kept (it pages in the weights).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "sim/cost_model.h"

namespace tandem::sim {

struct ProfileOptions {
  std::vector<int> chunk_sizes = {16, 64, 128, 256, 512};
  std::vector<int> contexts = {0, 512, 1536};
  std::vector<int> batches = {1, 2, 4, 8, 16, 32};
  std::vector<int> decode_contexts = {64, 512, 1536};
  int64_t max_batch_tokens = 4096;  // skip decode experiments whose prompts exceed this in all
  std::vector<int> mixed_batches = {4, 16};
  std::vector<int> mixed_chunks = {128, 384};
  int decode_steps = 6;
  int repeats = 2;
  uint32_t seed = 1;
  // Told what runs, e.g. "decode batch 8 context 512 (3/12)".
  std::function<void(const std::string&)> progress;

  // A handful of tiny experiments (seconds on the tiny test model): `tandem profile --quick`.
  static ProfileOptions Quick();
  // What `--token-budget auto` runs when an engine starts (a few seconds on this VM).
  static ProfileOptions StartUp();
};

// The budgets a pick chooses among: powers of two from 16 to `max`.
std::vector<int> PowerOfTwoBudgets(int max);

// The KV cache an engine needs to run `options`' experiments, in tokens.
int64_t ProfileKvTokens(const ProfileOptions& options);
// The token budget an engine needs (every chunk and mixed batch runs in one iteration).
int ProfileTokenBudget(const ProfileOptions& options);

// Runs the experiments on `engine` (which must have the prefix cache on, a token budget of at
// least ProfileTokenBudget() and room for ProfileKvTokens() tokens, and nothing else running)
// and fits the cost. FailedPrecondition when the engine does not qualify; errors of the engine
// are returned as they are.
absl::StatusOr<WorkerProfile> ProfileEngine(Engine& engine, const ProfileOptions& options);

}  // namespace tandem::sim
