// `tandem bench serve` as a library: options in, a run (or a goodput search) against a server,
// the table on `out`, progress on `err`, the JSON result file. The CLI (cli/bench_cmd.cc)
// parses flags and loads the tokenizer; everything else is here.
//
// Thread-safety: one call at a time per ServeContext; blocks until the run is over.
#pragma once

#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "bench/goodput_search.h"
#include "bench/metrics.h"
#include "bench/request_plan.h"
#include "bench/workload.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace tandem::bench {

struct ServeOptions {
  std::string base_url = "http://127.0.0.1:8000";
  std::string endpoint = "/v1/completions";  // chat when it ends in /chat/completions
  std::string model;                         // empty: the first model GET /v1/models lists
  std::string api_key;                       // sent as "Authorization: Bearer ..." when set
  int num_prompts = 1000;
  double request_rate = std::numeric_limits<double>::infinity();
  double burstiness = 1.0;
  int max_concurrency = 0;  // 0: no limit
  uint64_t seed = 0;
  std::string workload = "fixed";
  WorkloadDefaults lengths;
  std::string schedule;          // inline phases, or a file of them
  std::string trace_file;
  double trace_time_scale = 1.0;
  std::optional<SloSpec> slo;
  std::string result_file;       // empty: none
  bool save_requests = true;     // per-request records in the result file
  bool find_max_rate = false;
  GoodputSearchOptions search;
  double request_timeout_s = 600;
  bool ignore_eos = true;
  double temperature = 0;
  bool progress = true;

  bool chat() const;
};

// Checks the options and reads the schedule or trace: everything a user can get wrong before
// anything is contacted. InvalidArgument (or NotFound for a missing file) explains what.
absl::StatusOr<TrafficSpec> PrepareTraffic(const ServeOptions& options);

// What the caller resolved: the tokenizer of the served model and its chat template.
struct ServeContext {
  const text::Tokenizer* tokenizer = nullptr;
  const text::ChatTemplate* chat_template = nullptr;  // required for chat endpoints
  std::string tokenizer_path;
  int tokenizer_context_length = 0;  // the GGUF's context, when the server does not say
  std::FILE* out = stdout;
  std::FILE* err = stderr;
};

// Runs the benchmark (or the search). Errors: Unavailable / FailedPrecondition from the
// preflight (nothing at the URL, not an OpenAI API), InvalidArgument for prompts that cannot
// be built, Aborted when no request succeeded (the table is printed first), Unavailable when
// the result file cannot be written.
absl::Status RunServeBenchmark(const ServeOptions& options, const TrafficSpec& traffic, const ServeContext& context);

}  // namespace tandem::bench
