// A discrete-event simulator of a tandem cluster: the router and its prefill, decode and mixed
// workers, driven by a list of requests (arrival time, input and output tokens) and an
// iteration cost model (sim/cost_model.h). It answers "what would TTFT, TPOT and SLO attainment
// be for this traffic on this cluster" in milliseconds of CPU time per simulated minute.
//
// What is modelled, and how faithfully:
//   - Each worker runs the engine's own Scheduler and BlockManager (engine/scheduler.h): the
//     same continuous batching, stall-free chunked prefill under the token budget, KV block
//     accounting and preemption by recompute. Only the forward pass is replaced: an iteration
//     takes IterationCost::Seconds(DescribeIteration(plan)). The prefix cache is off (the
//     workloads simulated have no shared prefixes; shared-prefix requests are simulated as
//     whole prompts).
//   - The router's placement rules (router/placement.h): conditional disaggregation
//     (PrefillLocally, and PrefillLocallyByCost at the prefill rate measured as the router does:
//     each prefill's queue ahead plus own tokens over its call's time), the decode worker with
//     room and the most free KV (PickDecode; for a local prefill, the least queued prefill
//     first: PickLocal), the prefill worker with the least queued + uncached tokens within the
//     slack (PickPrefill).
//     The router sees the workers' exact state; the real one sees it through heartbeats.
//   - Disaggregated requests: ReserveKv on the decode worker (blocks for the prompt; when no
//     decode worker has room the request waits with the router's backoff, 10 ms doubling to
//     200 ms, and fails as HTTP 429 after queue_timeout_s), the prefill on a prefill worker,
//     the KV hand-off of every computed chunk over that worker's link (latency + bytes /
//     bandwidth, chunks queued behind each other, overlapped with the next chunk's compute),
//     the first token to the client when the last chunk has arrived, then the decode.
//   - Every router <-> worker message costs hop_s; tokens reach the client hop_s after the
//     iteration that produced them ends.
// Not modelled: the controller (worker counts are fixed for a run), heartbeat staleness,
// HTTP/JSON and tokenization costs, prefix caching, CPU contention between workers sharing a
// machine beyond what the profile measured, failures.
//
// Deterministic: the same inputs give the same result. Single-threaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/metrics.h"
#include "engine/scheduler.h"
#include "sim/cost_model.h"

namespace tandem::sim {

enum class Role { kPrefill, kDecode, kMixed };
std::string_view RoleName(Role role);

struct SimWorker {
  Role role = Role::kMixed;
  IterationCost cost;
  int64_t num_blocks = 0;
  int block_size = 16;
  SchedulerOptions scheduler;
};

struct SimCluster {
  std::vector<SimWorker> workers;
  int32_t local_prefill_threshold = 0;  // the router's --local-prefill-threshold
  double local_prefill_ttft_slo_s = 0;  // the router's --local-prefill-ttft-slo (0: off)
  int64_t affinity_slack_tokens = 1024;
  int64_t kv_bytes_per_token = 0;
  TransferCost transfer;
  double hop_s = 0.0005;
  double queue_timeout_s = 60;
  double request_timeout_s = 600;
  // Every token's time in RequestRecord::chunk_s (ITL percentiles), or only the first token's
  // (TTFT, TPOT and attainment are still exact; the goodput search needs no more).
  bool record_every_token = true;
};

struct SimRequest {
  double arrival_s = 0;
  int input_tokens = 0;
  int output_tokens = 0;
  int phase = 0;
};

struct SimWorkerStats {
  int64_t local_by_cost = 0;  // requests the cost rule sent here to prefill locally
  double busy_s = 0;
  int64_t iterations = 0;
  int64_t prefill_tokens = 0;
  int64_t decode_tokens = 0;
  int64_t max_running = 0;
  int64_t preemptions = 0;
};

struct SimResult {
  // One record per request in the load generator's terms (bench/metrics.h): Summarize() gives
  // the same table `tandem bench serve` prints.
  std::vector<bench::RequestRecord> records;
  double duration_s = 0;  // from time 0 to the end of the last request
  std::vector<SimWorkerStats> workers;
  int64_t events = 0;
};

// InvalidArgument for a cluster without a decode-capable worker, a request that could never
// fit a decode worker's KV cache, or a worker without KV blocks.
absl::StatusOr<SimResult> Simulate(const SimCluster& cluster, const std::vector<SimRequest>& requests);

// The share of `result`'s requests that met `slo` (bench::MeetsSlo); 1 when there were none.
double Attainment(const SimResult& result, const bench::SloSpec& slo);

}  // namespace tandem::sim
