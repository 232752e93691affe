#include "metrics/text_format.h"

#include <cmath>
#include <iterator>

#include "common/strings.h"
#include "fmt/format.h"

namespace tandem::metrics {
namespace {

bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

absl::Status ValidateMetricName(std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("metric name is empty");
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = IsAsciiLetter(c) || c == '_' || c == ':' || (i > 0 && IsAsciiDigit(c));
    if (!ok) {
      return absl::InvalidArgumentError(
          StrCat("metric name '", name, "' does not match [a-zA-Z_:][a-zA-Z0-9_:]*"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateLabelName(std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("label name is empty");
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = IsAsciiLetter(c) || c == '_' || (i > 0 && IsAsciiDigit(c));
    if (!ok) {
      return absl::InvalidArgumentError(
          StrCat("label name '", name, "' does not match [a-zA-Z_][a-zA-Z0-9_]*"));
    }
  }
  if (name.starts_with("__")) {
    return absl::InvalidArgumentError(
        StrCat("label name '", name, "' starts with '__', which is reserved"));
  }
  return absl::OkStatus();
}

void AppendEscapedHelp(std::string_view help, std::string* out) {
  for (char c : help) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      default:
        out->push_back(c);
    }
  }
}

void AppendEscapedLabelValue(std::string_view value, std::string* out) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '"':
        out->append("\\\"");
        break;
      case '\n':
        out->append("\\n");
        break;
      default:
        out->push_back(c);
    }
  }
}

void AppendValue(double value, std::string* out) {
  if (std::isnan(value)) {
    out->append("NaN");
  } else if (std::isinf(value)) {
    out->append(value > 0 ? "+Inf" : "-Inf");
  } else {
    // fmt's default for double is the shortest representation that round-trips, like Go's
    // strconv.FormatFloat(v, 'g', -1, 64) that Prometheus' own clients use.
    fmt::format_to(std::back_inserter(*out), "{}", value);
  }
}

std::string FormatValue(double value) {
  std::string out;
  AppendValue(value, &out);
  return out;
}

}  // namespace tandem::metrics
