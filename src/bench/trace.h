// Trace replay input for `tandem bench serve --trace FILE`: one request per line, with its
// arrival time and its input and output lengths in tokens.
//
// JSON lines (one object per line; blank lines and lines starting with '#' are skipped). The
// arrival time is the first of these keys present:
//   "arrival_s"  seconds            (tandem's own)
//   "arrival_ms" milliseconds       (tandem's own)
//   "timestamp"  milliseconds       (Mooncake traces)
//   "Timestamp"  seconds            (BurstGPT)
// the input length: "input_tokens" | "input_length" (Mooncake) | "Request tokens" (BurstGPT),
// the output length: "output_tokens" | "output_length" (Mooncake) | "Response tokens"
// (BurstGPT). Other keys (Mooncake's hash_ids, BurstGPT's Model, ...) are ignored.
// BurstGPT's own CSV files (a header line naming Timestamp, Request tokens and Response
// tokens) are read too.
//
// Times are made relative to the earliest arrival (the replay starts at once) and multiplied
// by the time scale (0.5 replays twice as fast, 2 half as fast). Records are sorted by arrival.
// Lengths of 0 (BurstGPT logs failed requests with 0 response tokens) become 1 and are counted;
// negative or non-integer lengths, missing keys and malformed lines are errors naming the line.
//
// Pure functions.
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::bench {

struct TraceRecord {
  double arrival_s = 0;
  int input_tokens = 0;
  int output_tokens = 0;
};

struct Trace {
  std::vector<TraceRecord> records;
  int zero_lengths_raised = 0;  // lengths of 0 that became 1
};

// InvalidArgument "trace line N: ..." for a bad line; InvalidArgument for an empty trace or a
// time scale that is not a finite number > 0.
absl::StatusOr<Trace> ParseTrace(std::string_view text, double time_scale = 1.0);

}  // namespace tandem::bench
