#include "bench/trace.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "bench/text_util.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tandem::bench {
namespace {

using Json = nlohmann::json;

constexpr std::pair<const char*, double> kTimeKeys[] = {
    {"arrival_s", 1.0}, {"arrival_ms", 1e-3}, {"timestamp", 1e-3}, {"Timestamp", 1.0}};
constexpr const char* kInputKeys[] = {"input_tokens", "input_length", "Request tokens"};
constexpr const char* kOutputKeys[] = {"output_tokens", "output_length", "Response tokens"};

struct RawRecord {
  double time = 0;  // seconds, not yet re-based
  int64_t input = 0, output = 0;
};

absl::StatusOr<int64_t> LengthValue(double v, std::string_view key) {
  if (!std::isfinite(v) || v < 0 || v != std::floor(v) || v > (1 << 24)) {
    return absl::InvalidArgumentError(StrCat("'", key, "' must be a whole number of tokens >= 0, not ", v));
  }
  return static_cast<int64_t>(v);
}

// The value of the first of `keys` present in `object`, as a number.
template <size_t N>
absl::StatusOr<std::pair<double, std::string>> FirstNumber(const Json& object, const char* const (&keys)[N],
                                                           std::string_view what) {
  for (const char* key : keys) {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) continue;
    if (!it->is_number()) return absl::InvalidArgumentError(StrCat("'", key, "' is not a number"));
    return std::pair<double, std::string>(it->get<double>(), key);
  }
  std::string names;
  for (const char* key : keys) names += StrCat(names.empty() ? "" : ", ", "\"", key, "\"");
  return absl::InvalidArgumentError(StrCat("no ", what, " (one of ", names, ")"));
}

absl::StatusOr<RawRecord> ParseJsonLine(std::string_view line) {
  const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  RawRecord r;
  bool have_time = false;
  for (const auto& [key, scale] : kTimeKeys) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_number()) return absl::InvalidArgumentError(StrCat("'", key, "' is not a number"));
    r.time = it->get<double>() * scale;
    have_time = true;
    break;
  }
  if (!have_time) {
    return absl::InvalidArgumentError(
        "no arrival time (one of \"arrival_s\", \"arrival_ms\", \"timestamp\" (ms), \"Timestamp\" (s))");
  }
  TANDEM_ASSIGN_OR_RETURN(auto in, FirstNumber(j, kInputKeys, "input length"));
  TANDEM_ASSIGN_OR_RETURN(auto out, FirstNumber(j, kOutputKeys, "output length"));
  TANDEM_ASSIGN_OR_RETURN(r.input, LengthValue(in.first, in.second));
  TANDEM_ASSIGN_OR_RETURN(r.output, LengthValue(out.first, out.second));
  return r;
}

// BurstGPT CSV: the header's column positions of the three fields.
struct CsvColumns {
  size_t time = 0, input = 0, output = 0, count = 0;
};

std::optional<CsvColumns> ParseCsvHeader(std::string_view line) {
  CsvColumns c;
  bool t = false, i = false, o = false;
  const auto fields = Split(line, ',');
  c.count = fields.size();
  for (size_t k = 0; k < fields.size(); ++k) {
    const std::string_view f = Trim(fields[k]);
    if (f == "Timestamp") c.time = k, t = true;
    if (f == "Request tokens") c.input = k, i = true;
    if (f == "Response tokens") c.output = k, o = true;
  }
  if (!t || !i || !o) return std::nullopt;
  return c;
}

absl::StatusOr<RawRecord> ParseCsvLine(std::string_view line, const CsvColumns& c) {
  const auto fields = Split(line, ',');
  if (fields.size() != c.count) {
    return absl::InvalidArgumentError(StrCat("expected ", c.count, " comma-separated fields, got ", fields.size()));
  }
  RawRecord r;
  TANDEM_ASSIGN_OR_RETURN(r.time, ParseDouble(fields[c.time]));
  TANDEM_ASSIGN_OR_RETURN(double in, ParseDouble(fields[c.input]));
  TANDEM_ASSIGN_OR_RETURN(double out, ParseDouble(fields[c.output]));
  TANDEM_ASSIGN_OR_RETURN(r.input, LengthValue(in, "Request tokens"));
  TANDEM_ASSIGN_OR_RETURN(r.output, LengthValue(out, "Response tokens"));
  return r;
}

Trace Finish(std::vector<RawRecord> raw, double time_scale) {
  std::stable_sort(raw.begin(), raw.end(), [](const RawRecord& a, const RawRecord& b) { return a.time < b.time; });
  Trace trace;
  const double t0 = raw.front().time;
  for (const RawRecord& r : raw) {
    TraceRecord t;
    t.arrival_s = (r.time - t0) * time_scale;
    t.input_tokens = static_cast<int>(std::max<int64_t>(1, r.input));
    t.output_tokens = static_cast<int>(std::max<int64_t>(1, r.output));
    trace.zero_lengths_raised += (r.input == 0) + (r.output == 0);
    trace.records.push_back(t);
  }
  return trace;
}

}  // namespace

absl::StatusOr<Trace> ParseTrace(std::string_view text, double time_scale) {
  if (!(time_scale > 0) || !std::isfinite(time_scale)) {
    return absl::InvalidArgumentError(StrCat("the trace time scale must be a finite number > 0, not ", time_scale));
  }
  std::vector<RawRecord> raw;
  std::optional<CsvColumns> csv;
  bool first = true;
  int number = 0;
  for (std::string_view line : Split(text, '\n')) {
    ++number;
    line = Trim(line);
    if (line.empty() || line.front() == '#') continue;
    if (first && line.front() != '{') {
      csv = ParseCsvHeader(line);
      if (!csv) {
        return absl::InvalidArgumentError(StrCat(
            "trace line ", number, ": neither a JSON object nor a BurstGPT CSV header (Timestamp, ..., "
            "Request tokens, Response tokens)"));
      }
      first = false;
      continue;
    }
    first = false;
    auto r = csv ? ParseCsvLine(line, *csv) : ParseJsonLine(line);
    if (!r.ok()) return absl::InvalidArgumentError(StrCat("trace line ", number, ": ", r.status().message()));
    if (!std::isfinite(r->time)) return absl::InvalidArgumentError(StrCat("trace line ", number, ": bad time"));
    raw.push_back(*r);
  }
  if (raw.empty()) return absl::InvalidArgumentError("the trace has no requests");
  return Finish(std::move(raw), time_scale);
}

}  // namespace tandem::bench
