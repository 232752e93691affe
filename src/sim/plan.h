// `tandem plan` as a library: cluster shapes (colocated, NpMd, N mixed) turned into simulated
// clusters from a profile, the requests of a workload, and DistServe's goodput of a shape by
// simulation (the highest request rate at which the target share of requests meets the SLOs).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/metrics.h"
#include "bench/request_plan.h"
#include "nlohmann/json_fwd.hpp"
#include "sim/cost_model.h"
#include "sim/simulator.h"

namespace tandem::sim {

// A cluster's worker counts. On a CPU budget (PlanSettings::cpus > 0) every worker gets
// cpus / workers threads (at least 1), as bench/compare.py starts them.
struct ClusterShape {
  int prefill = 0;
  int decode = 0;
  int mixed = 0;

  int workers() const { return prefill + decode + mixed; }
  // "1p1d", "2p3d", "colocated" (1 mixed), "3mixed".
  std::string Name() const;
};
// Parses Name()'s forms; "NpMd" needs N >= 1 and M >= 1 (0p2d is written 2mixed, which is what a
// cluster without prefill workers is: decode workers prefill locally).
absl::StatusOr<ClusterShape> ParseClusterShape(std::string_view text);

struct PlanSettings {
  const Profile* profile = nullptr;
  int cpus = 0;  // > 0: a CPU budget split between the workers; 0: one device per worker
  int block_size = 16;
  int64_t kv_cache_bytes = 256LL << 20;  // per worker
  int token_budget = 512;
  int max_num_seqs = 64;
  int32_t local_prefill_threshold = 0;
  double local_prefill_ttft_slo_s = 0;  // the router's --local-prefill-ttft-slo, seconds (0: off)
  double hop_s = 0.0005;
  double queue_timeout_s = 60;
  double request_timeout_s = 600;
  // Every iteration time is multiplied by this: the slowdown of iterations inside a running
  // cluster (router, load generator and other workers sharing the machine) against the idle
  // machine the profile was measured on. 1 on machines where each worker has its own device.
  double cost_scale = 1.0;
};

// Threads per worker of `shape` under `settings` (0 on devices).
int ThreadsPerWorker(const ClusterShape& shape, const PlanSettings& settings);
absl::StatusOr<SimCluster> BuildCluster(const ClusterShape& shape, const PlanSettings& settings);

std::vector<SimRequest> RequestsFromArrivals(const std::vector<bench::Arrival>& arrivals);
// The requests of a `tandem bench serve` result file (its per-request records: scheduled
// time, input tokens, output tokens asked for), for replaying a measured run.
absl::StatusOr<std::vector<SimRequest>> RequestsFromBenchResult(const nlohmann::json& result);

struct ShapeGoodput {
  ClusterShape shape;
  int threads = 0;
  std::optional<double> goodput;  // req/s at the target attainment; nullopt: not even rate_min
  bool hit_rate_max = false;
  int simulations = 0;
};

struct GoodputSearchSettings {
  bench::TrafficSpec traffic;  // kRate mode: the rate is what the search varies
  uint64_t seed = 0;
  bench::SloSpec slo;
  double attainment = 0.9;
  double rate_min = 0.01;
  double rate_max = 0;  // 0: bracket upwards from rate_min by doubling until a rate fails
  int iterations = 8;
  double min_duration_s = 0;  // each probe sends at least rate x this many requests
};

// The traffic of `settings` at `rate`, as requests (num_prompts, or more to cover
// min_duration_s).
std::vector<SimRequest> RequestsAtRate(const GoodputSearchSettings& settings, double rate);

absl::StatusOr<ShapeGoodput> FindGoodput(const ClusterShape& shape, const PlanSettings& plan,
                                         const GoodputSearchSettings& search);

// The shapes `tandem plan` tries for a budget of `max_workers` workers: colocated (on a CPU
// budget one mixed worker with every thread; on devices max_workers mixed workers) and every
// prefill:decode split of max_workers workers (for more than 16, every k-th split with k chosen
// to try about 16, plus the neighbours of the best: RefineSplits).
std::vector<ClusterShape> CandidateShapes(int max_workers, bool cpu_budget);
std::vector<ClusterShape> RefineSplits(int max_workers, const ClusterShape& best, const std::vector<ClusterShape>& tried);

}  // namespace tandem::sim
