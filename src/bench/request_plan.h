// From the traffic a user asked for to the list of requests to send: when each arrives (a
// gamma process, a schedule or a trace), its lengths (the workload, clipped to the model's
// context), its prompt (exact token count) and its JSON body.
//
// Deterministic for a seed: arrivals, lengths and prompt words draw from separate generators
// derived from it, so changing the workload does not move the arrival times.
// Pure functions (no I/O, no clock).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/arrivals.h"
#include "bench/load_runner.h"
#include "bench/prompt_builder.h"
#include "bench/trace.h"
#include "bench/workload.h"

namespace tandem::bench {

// What arrives. Exactly one of the three modes.
struct TrafficSpec {
  enum class Mode { kRate, kSchedule, kTrace };
  Mode mode = Mode::kRate;
  // kRate: num_prompts arrivals of `process`, lengths from `workload`.
  ArrivalProcess process;
  int num_prompts = 0;
  WorkloadSpec workload;
  // kSchedule: phases with their workloads (one per phase), burstiness from `process`.
  std::vector<SchedulePhase> schedule;
  std::vector<WorkloadSpec> phase_workloads;
  // kTrace: arrivals and lengths from the trace.
  Trace trace;
};

struct Arrival {
  double time_s = 0;
  int phase = 0;
  RequestShape shape;
};

// Arrival times and lengths, in time order.
std::vector<Arrival> DrawTraffic(const TrafficSpec& traffic, uint64_t seed);

// A request that does not fit the context (input + output > context_length) has its input
// cut to context - output (but not below half the context) and then its output cut to what
// is left; an input below the fewest tokens a prompt can have (BOS, chat template, shared
// prefix) is raised to that. Returns whether it changed anything.
bool ClipShape(int context_length, int min_input, RequestShape* shape);

struct RequestSettings {
  std::string model;
  bool chat = false;
  int context_length = 0;  // 0: unknown, no clipping
  bool ignore_eos = true;
  double temperature = 0;
};

struct PlanStats {
  int clipped = 0;  // requests whose lengths ClipShape changed
};

// The requests to send, their prompts built on one thread per CPU (the same result for any
// number of threads). InvalidArgument when a prompt cannot be built (context too short for
// the chat template, say).
absl::StatusOr<std::vector<PlannedRequest>> BuildRequests(const std::vector<Arrival>& arrivals,
                                                          const PromptBuilder& builder,
                                                          const RequestSettings& settings, uint64_t seed,
                                                          PlanStats* stats);

// The streaming request body for `prompt` (completions: "prompt"; chat: "messages"), with
// max_tokens, ignore_eos, temperature and stream_options.include_usage.
std::string RequestBody(const Prompt& prompt, int max_tokens, const RequestSettings& settings);

}  // namespace tandem::bench
