// Small text helpers for the load generator's specs and files (workload specs, schedules,
// traces, SLOs): splitting, trimming and strict number parsing. Pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::bench {

// Pieces of `text` between `sep` (empty pieces kept).
std::vector<std::string_view> Split(std::string_view text, char sep);
// Without leading and trailing ASCII whitespace.
std::string_view Trim(std::string_view text);
// The whole of `text` as a number ("inf" and "infinity" allowed); InvalidArgument otherwise.
absl::StatusOr<double> ParseDouble(std::string_view text);
// The whole of `text` as a base-10 integer; InvalidArgument otherwise.
absl::StatusOr<int64_t> ParseInt(std::string_view text);
// The file's contents; NotFound / Unavailable naming the path.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace tandem::bench
