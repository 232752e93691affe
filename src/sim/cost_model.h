// The cost model behind `tandem profile` and `tandem plan`: how long one engine iteration
// takes, and how long a KV hand-off takes, on one machine for one model and worker setting.
//
// Iteration time is linear in the work the iteration does (engine/scheduler.h IterationShape):
//     t = fixed + per_token * tokens + per_sample * sampled + per_attention * attention_pairs
//         + per_kv_read * kv_read_tokens
// clamped below by min_iteration_s. `tokens` carries the weight matmuls, `sampled` the output
// projection over the vocabulary and the sampler, `attention_pairs` the query-key compute that
// grows with the context, `kv_read_tokens` the KV cache read (decode attention's bound on a GPU). On this project's CPU engine the four terms fit measured iterations
// of pure prefill, pure decode and mixed batches to a few percent (`tandem profile` prints the
// fit's error); a GPU worker whose small batches are bound by reading the weights is better
// described with min_iteration_s (the weight-read time) and a small `fixed`.
//
// KV transfer: t = latency + bytes / bandwidth, bytes = tokens * kv_bytes_per_token.
//
// A Profile holds one fitted model per worker setting (threads for the CPU, one entry for a
// GPU), the raw samples it was fitted on, the transfer model and the model's shape, and is
// written as JSON (schema: docs/plan.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/scheduler.h"
#include "nlohmann/json_fwd.hpp"

namespace tandem::sim {

struct IterationCost {
  double fixed_s = 0;
  double per_token_s = 0;
  double per_sample_s = 0;
  double per_attention_s = 0;  // per query-key pair
  double per_kv_read_s = 0;    // per cached token read by a chunk's attention
  double min_iteration_s = 0;

  double Seconds(const IterationShape& shape) const;
};

// One measured iteration.
struct IterationSample {
  IterationShape shape;
  double seconds = 0;
  std::string kind;  // "prefill", "decode" or "mixed" (which experiment it came from)
};

struct FitQuality {
  double mean_abs_rel_error = 0;  // mean |predicted - measured| / measured
  double max_abs_rel_error = 0;
};

// Least squares with non-negative coefficients (a term whose unconstrained coefficient comes
// out negative is dropped and the rest refitted), weighted by 1/seconds so that short decode
// iterations count as much as long prefills (the error minimised is relative). InvalidArgument
// for fewer samples than terms or non-positive times.
absl::StatusOr<IterationCost> FitIterationCost(const std::vector<IterationSample>& samples);
FitQuality Evaluate(const IterationCost& cost, const std::vector<IterationSample>& samples);

struct TransferCost {
  double latency_s = 0.0005;
  double bytes_per_s = 2e9;
  std::string source;  // how it was obtained (measured, flags, published)

  double Seconds(int64_t bytes) const { return latency_s + static_cast<double>(bytes) / bytes_per_s; }
};

struct WorkerProfile {
  std::string device = "cpu";  // cpu or cuda (or a name for a published profile)
  int threads = 0;             // CPU compute threads (0 for a GPU)
  IterationCost cost;
  FitQuality fit;
  std::vector<IterationSample> samples;
};

struct ModelShape {
  std::string name;
  int64_t kv_bytes_per_token = 0;
  int64_t weight_bytes = 0;
  int context_length = 0;
};

struct Profile {
  ModelShape model;
  std::vector<WorkerProfile> workers;  // one per worker setting
  TransferCost transfer;
  // The token budget picked from an ITL SLO (`tandem profile --itl-slo`), if one was given.
  std::optional<int> token_budget;
  std::optional<double> token_budget_itl_slo_ms;
  std::string machine;  // what it was measured on (free text)
  std::string created;  // ISO date

  // The entry for `threads` CPU threads: the exact one, else the nearest below, else the
  // nearest above. nullptr if there are none.
  const WorkerProfile* ForThreads(int threads) const;
};

nlohmann::json ToJson(const Profile& profile);
absl::StatusOr<Profile> ProfileFromJson(const nlohmann::json& j);
absl::StatusOr<Profile> ReadProfile(const std::string& path);
absl::Status WriteProfile(const Profile& profile, const std::string& path);

// The largest budget among `candidates` (ascending) whose iteration - `decodes` sequences
// decoding at `context` tokens each plus a prefill chunk filling the rest of the budget at
// context `context` - is predicted to take at most `itl_slo_s`. nullopt if even the smallest
// does not fit.
std::optional<int> PickTokenBudget(const IterationCost& cost, double itl_slo_s, const std::vector<int>& candidates,
                                   int decodes, int context);

}  // namespace tandem::sim
