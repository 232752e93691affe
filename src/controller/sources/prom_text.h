// Reading the Prometheus text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format), as the
// controller's direct scrape receives it from the router's and workers' /metrics, and the
// PromQL-style helpers the signal sources compute with: summing a metric over label matchers,
// a histogram's cumulative buckets, and histogram_quantile.
//
// The input comes from the network: malformed text is an InvalidArgument error naming the line
// (1-based) and column, never a crash or an out-of-bounds read.
//
// Pure functions and value types; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::controller {

// Label name → value, sorted by name (so two equal label sets compare and print equal).
using PromLabels = std::map<std::string, std::string, std::less<>>;

struct PromSample {
  std::string name;  // the series name as written, e.g. "x_bucket" for a histogram bucket
  PromLabels labels;
  double value = 0;
  std::optional<int64_t> timestamp_ms;  // when the exposition gave one
};

enum class PromType { kUntyped, kCounter, kGauge, kHistogram, kSummary };

struct PromExposition {
  std::vector<PromSample> samples;    // in the order of the text
  std::map<std::string, PromType, std::less<>> types;  // metric family → its # TYPE
  std::map<std::string, std::string, std::less<>> help;  // metric family → unescaped # HELP

  // The type of the family a series belongs to: `x_bucket`, `x_sum` and `x_count` resolve to a
  // histogram `x` (`x_sum`, `x_count` also to a summary); kUntyped when no TYPE line covers it.
  PromType TypeOf(std::string_view sample_name) const;
};

// Parses a whole exposition. Accepts what Prometheus' own text parser accepts for version
// 0.0.4: blank lines, `#` comments, HELP and TYPE lines, label values with the escapes \\, \"
// and \n, a trailing comma in the label set, the values NaN, +Inf, -Inf, and an optional
// integer millisecond timestamp. "\r\n" line ends are tolerated.
absl::StatusOr<PromExposition> ParsePromText(std::string_view text);

// A sample value or a Prometheus API value string: a decimal or exponent float with an optional
// sign, or NaN / Inf / +Inf / -Inf (any case). nullopt for anything else, including trailing text.
std::optional<double> ParsePromValue(std::string_view text);

// One label condition, with PromQL's convention that an absent label reads as "": matches when
// the label's value is one of `values` (`=` for one value, `=~"a|b"` for several).
struct LabelMatcher {
  std::string name;
  std::vector<std::string> values;

  static LabelMatcher Eq(std::string name, std::string value) { return {std::move(name), {std::move(value)}}; }
  static LabelMatcher AnyOf(std::string name, std::vector<std::string> values) {
    return {std::move(name), std::move(values)};
  }
  bool Matches(const PromLabels& labels) const;
};
using LabelMatchers = std::vector<LabelMatcher>;

bool MatchesAll(const PromLabels& labels, const LabelMatchers& matchers);

// Sum of the values of the samples named `name` whose labels match every matcher; nullopt when
// none matches (PromQL's empty `sum(...)`).
std::optional<double> SumSamples(const std::vector<PromSample>& samples, std::string_view name,
                                 const LabelMatchers& matchers = {});

// One bucket of a histogram: observations <= upper_bound (cumulative, as `_bucket` carries it).
struct HistogramBucket {
  double upper_bound = 0;
  double count = 0;
};

// The `<histogram>_bucket` samples matching `matchers`, summed by `le` (PromQL's
// `sum by (le) (...)`) and sorted by upper bound. Empty when none matches; InvalidArgument when a
// matching bucket has no `le` label or one that is not a number.
absl::StatusOr<std::vector<HistogramBucket>> CumulativeBuckets(const std::vector<PromSample>& samples,
                                                              std::string_view histogram,
                                                              const LabelMatchers& matchers = {});

// The q-quantile of cumulative `buckets` by PromQL's histogram_quantile: linear interpolation
// inside the bucket holding rank q × total (the lowest bucket starts at 0 unless its bound is
// <= 0), the last finite bound when the rank falls in the +Inf bucket. NaN without a +Inf bucket,
// with fewer than two buckets or without observations; -Inf for q < 0, +Inf for q > 1. Counts
// that decrease with the bound (a torn read) are made monotonic first, as Prometheus does.
double HistogramQuantile(double q, std::vector<HistogramBucket> buckets);

}  // namespace tandem::controller
