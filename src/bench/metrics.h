// What one request measured, and the run's summary, with vLLM's metric definitions
// (`vllm bench serve`) and DistServe's SLO attainment:
//   TTFT  send -> the first chunk carrying content (text or delta.content); vLLM counts the
//         first chunk of any kind, which for chat is the role-only delta: tandem does not.
//   ITL   every gap between consecutive content chunks.
//   E2EL  send -> the end of the response.
//   TPOT  (E2EL - TTFT) / (output tokens - 1), for requests with more than one output token.
//   A request is good when it succeeded and meets every SLO given (ttft, tpot, e2el; DistServe
//   and vLLM's --goodput); attainment = good / requests sent (a failed request is not good);
//   goodput = good / duration.
// Percentiles interpolate linearly between closest ranks (numpy's default, as vLLM).
//
// Pure functions over plain values.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::bench {

enum class FailureKind {
  kNone,
  kConnect,         // no connection (refused, unreachable, DNS)
  kHttpStatus,      // a response status other than 200
  kStreamError,     // an SSE error event in the stream
  kTruncated,       // the stream ended (connection closed) before [DONE] or the end of the body
  kTimeout,         // --request-timeout passed
  kLengthMismatch,  // usage.completion_tokens differs from the max_tokens asked for
  kBadResponse,     // not an SSE stream of OpenAI chunks
};
std::string_view FailureKindName(FailureKind kind);

// One request as measured. Times are seconds; chunk and end times from when it was sent.
struct RequestRecord {
  int index = 0;
  int phase = 0;              // schedule phase (0 without a schedule)
  double scheduled_s = 0;     // planned arrival, from the start of the run
  double sent_s = 0;          // when it was sent (later than scheduled when a concurrency slot was awaited)
  int input_tokens = 0;       // as built (exact for the tokenizer given)
  int output_tokens_requested = 0;
  int prompt_tokens_reported = -1;  // usage.prompt_tokens; -1 when the server sent none
  int output_tokens = 0;      // usage.completion_tokens, or content chunks when no usage came
  bool usage_reported = false;
  std::vector<double> chunk_s;  // content chunk arrivals after sending
  double end_s = 0;             // end of the response after sending
  FailureKind failure = FailureKind::kNone;
  int http_status = 0;
  std::string error;  // what went wrong, for failures

  bool ok() const { return failure == FailureKind::kNone; }
  std::optional<double> ttft_s() const;
  std::optional<double> tpot_s() const;
  std::vector<double> itl_s() const;
};

// SLO limits in milliseconds; unset ones are not checked.
struct SloSpec {
  std::optional<double> ttft_ms, tpot_ms, e2el_ms;
  bool empty() const { return !ttft_ms && !tpot_ms && !e2el_ms; }
  std::string Describe() const;  // "ttft:2000 tpot:200"
};

// "ttft:MS tpot:MS e2el:MS" (any subset, in any order, separated by spaces or commas).
// InvalidArgument for an unknown key, a repeated key, or a value that is not a number > 0.
absl::StatusOr<SloSpec> ParseSlo(std::string_view text);

// A request is good: it succeeded and meets every SLO in `slo`. A request with a single
// output token has no TPOT and passes a TPOT limit.
bool MeetsSlo(const RequestRecord& r, const SloSpec& slo);

// numpy.percentile(values, p) with linear interpolation; 0 for no values. p in [0, 100].
double Percentile(std::vector<double> values, double p);

struct Distribution {
  int count = 0;
  double mean = 0, std = 0, median = 0, p90 = 0, p99 = 0, max = 0;  // milliseconds
};
// Of `seconds`, reported in milliseconds.
Distribution Distribute(const std::vector<double>& seconds);

struct Summary {
  int sent = 0, completed = 0, failed = 0;
  double duration_s = 0;
  int64_t input_tokens = 0, output_tokens = 0;  // of completed requests
  double request_throughput = 0, output_throughput = 0, total_token_throughput = 0;
  Distribution ttft, tpot, itl, e2el;
  std::map<std::string, int> failures;   // by FailureKindName
  std::map<int, int> http_statuses;      // kHttpStatus failures by code
  int prompt_token_mismatches = 0;       // usage.prompt_tokens != input_tokens
  int usage_missing = 0;                 // completed requests without a usage chunk
  // With an SLO:
  std::optional<SloSpec> slo;
  int good = 0;
  double attainment = 0;       // good / sent
  double goodput = 0;          // good / duration_s
};

// `duration_s`: from the start of the run to the end of the last request.
Summary Summarize(const std::vector<RequestRecord>& records, double duration_s,
                  const std::optional<SloSpec>& slo);

}  // namespace tandem::bench
