// DistServe's goodput: the highest request rate at which at least `attainment` (0.9) of the
// requests meet the SLOs, found by bisection over [rate_min, rate_max].
//
// Each probe runs `repeats` open-loop runs at one rate (the caller's `probe` function, given
// the rate and the repeat number so it can vary the seed) and averages their attainment. The
// search first probes rate_max (if it passes, that is the answer and the range was too small)
// and rate_min (if it fails, no rate in the range passes), then bisects `iterations` times,
// keeping the highest passing rate: the answer is within (rate_max - rate_min) / 2^iterations
// of the knee when attainment falls with the rate.
//
// Pure logic: the probe is injected (tests use a synthetic attainment(rate) function).
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::bench {

struct GoodputSearchOptions {
  double attainment = 0.9;  // target share of good requests, in (0, 1]
  double rate_min = 0.25;   // requests per second
  double rate_max = 16;
  int iterations = 6;
  int repeats = 1;
};

// InvalidArgument for a target outside (0, 1], 0 < rate_min < rate_max not holding (finite),
// iterations < 0 or repeats < 1.
absl::Status ValidateGoodputSearch(const GoodputSearchOptions& options);

struct GoodputProbe {
  double rate = 0;
  std::vector<double> attainments;  // one per repeat
  double mean_attainment = 0;
  bool passed = false;
};

struct GoodputSearchResult {
  std::vector<GoodputProbe> probes;  // in the order they ran
  std::optional<double> max_rate;    // the highest passing rate probed; nullopt: none passed
  bool hit_rate_max = false;         // rate_max passed: the goodput may be higher
};

// `probe(rate, repeat)` returns that run's attainment in [0, 1]; an error stops the search and
// is returned. `on_probe` (optional) is told about each probe as it finishes.
using AttainmentProbe = std::function<absl::StatusOr<double>(double rate, int repeat)>;
absl::StatusOr<GoodputSearchResult> FindMaxRate(const GoodputSearchOptions& options, const AttainmentProbe& probe,
                                                const std::function<void(const GoodputProbe&)>& on_probe = {});

}  // namespace tandem::bench
