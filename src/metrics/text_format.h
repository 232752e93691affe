// Pieces of the Prometheus text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format):
// name rules, escaping and number formatting. Pure functions, thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace tandem::metrics {

// The content type a scrape of Render() output must carry.
inline constexpr std::string_view kExpositionContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// Metric names match [a-zA-Z_:][a-zA-Z0-9_:]*. InvalidArgument otherwise.
absl::Status ValidateMetricName(std::string_view name);

// Label names match [a-zA-Z_][a-zA-Z0-9_]* and must not start with "__" (reserved for
// Prometheus' internal use). InvalidArgument otherwise.
absl::Status ValidateLabelName(std::string_view name);

// HELP text escaping: '\' -> "\\", newline -> "\n".
void AppendEscapedHelp(std::string_view help, std::string* out);

// Label value escaping: '\' -> "\\", '"' -> "\"", newline -> "\n".
void AppendEscapedLabelValue(std::string_view value, std::string* out);

// A sample value or a bucket bound: shortest text that reads back as the same double
// ("1", "0.005", "1e+20"), and "+Inf", "-Inf", "NaN" for the special values.
void AppendValue(double value, std::string* out);
std::string FormatValue(double value);

}  // namespace tandem::metrics
