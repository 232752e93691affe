#include "bench/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "bench/text_util.h"
#include "common/strings.h"

namespace tandem::bench {

std::string_view FailureKindName(FailureKind kind) {
  switch (kind) {
    case FailureKind::kNone: return "none";
    case FailureKind::kConnect: return "connect_error";
    case FailureKind::kHttpStatus: return "http_status";
    case FailureKind::kStreamError: return "stream_error";
    case FailureKind::kTruncated: return "truncated_stream";
    case FailureKind::kTimeout: return "timeout";
    case FailureKind::kLengthMismatch: return "length_mismatch";
    case FailureKind::kBadResponse: return "bad_response";
  }
  return "unknown";
}

std::optional<double> RequestRecord::ttft_s() const {
  if (chunk_s.empty()) return std::nullopt;
  return chunk_s.front();
}

std::optional<double> RequestRecord::tpot_s() const {
  if (chunk_s.empty() || output_tokens < 2) return std::nullopt;
  return (end_s - chunk_s.front()) / (output_tokens - 1);
}

std::vector<double> RequestRecord::itl_s() const {
  std::vector<double> gaps;
  for (size_t i = 1; i < chunk_s.size(); ++i) gaps.push_back(chunk_s[i] - chunk_s[i - 1]);
  return gaps;
}

std::string SloSpec::Describe() const {
  std::string out;
  auto add = [&](const char* name, const std::optional<double>& v) {
    if (v) out += fmt::format("{}{}:{:g}", out.empty() ? "" : " ", name, *v);
  };
  add("ttft", ttft_ms);
  add("tpot", tpot_ms);
  add("e2el", e2el_ms);
  return out;
}

absl::StatusOr<SloSpec> ParseSlo(std::string_view text) {
  SloSpec slo;
  std::string normalized(text);
  std::replace(normalized.begin(), normalized.end(), ',', ' ');
  for (std::string_view item : Split(normalized, ' ')) {
    item = Trim(item);
    if (item.empty()) continue;
    const size_t colon = item.find(':');
    if (colon == std::string_view::npos) {
      return absl::InvalidArgumentError(StrCat("SLO '", item, "' is not KEY:MS (keys ttft, tpot, e2el)"));
    }
    const std::string_view key = item.substr(0, colon);
    auto ms = ParseDouble(item.substr(colon + 1));
    if (!ms.ok() || !(*ms > 0) || !std::isfinite(*ms)) {
      return absl::InvalidArgumentError(StrCat("SLO '", item, "': the limit must be a number of milliseconds > 0"));
    }
    std::optional<double>* slot = key == "ttft" ? &slo.ttft_ms
                                  : key == "tpot" ? &slo.tpot_ms
                                  : key == "e2el" ? &slo.e2el_ms
                                                  : nullptr;
    if (slot == nullptr) {
      return absl::InvalidArgumentError(StrCat("SLO key '", key, "' is not one of ttft, tpot, e2el"));
    }
    if (slot->has_value()) return absl::InvalidArgumentError(StrCat("SLO key '", key, "' is given twice"));
    *slot = *ms;
  }
  if (slo.empty()) return absl::InvalidArgumentError("no SLO given (e.g. ttft:2000 tpot:200)");
  return slo;
}

bool MeetsSlo(const RequestRecord& r, const SloSpec& slo) {
  if (!r.ok()) return false;
  if (slo.ttft_ms) {
    const auto ttft = r.ttft_s();
    if (!ttft || *ttft * 1e3 > *slo.ttft_ms) return false;
  }
  if (slo.tpot_ms) {
    if (const auto tpot = r.tpot_s(); tpot && *tpot * 1e3 > *slo.tpot_ms) return false;
  }
  if (slo.e2el_ms && r.end_s * 1e3 > *slo.e2el_ms) return false;
  return true;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = p / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (rank - static_cast<double>(lo));
}

Distribution Distribute(const std::vector<double>& seconds) {
  Distribution d;
  d.count = static_cast<int>(seconds.size());
  if (seconds.empty()) return d;
  std::vector<double> ms(seconds.size());
  std::transform(seconds.begin(), seconds.end(), ms.begin(), [](double s) { return s * 1e3; });
  d.mean = std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size());
  double var = 0;
  for (double v : ms) var += (v - d.mean) * (v - d.mean);
  d.std = std::sqrt(var / static_cast<double>(ms.size()));
  d.median = Percentile(ms, 50);
  d.p90 = Percentile(ms, 90);
  d.p99 = Percentile(ms, 99);
  d.max = *std::max_element(ms.begin(), ms.end());
  return d;
}

Summary Summarize(const std::vector<RequestRecord>& records, double duration_s,
                  const std::optional<SloSpec>& slo) {
  Summary s;
  s.sent = static_cast<int>(records.size());
  s.duration_s = duration_s;
  s.slo = slo;
  std::vector<double> ttft, tpot, itl, e2el;
  for (const RequestRecord& r : records) {
    if (r.prompt_tokens_reported >= 0 && r.prompt_tokens_reported != r.input_tokens) ++s.prompt_token_mismatches;
    if (slo && MeetsSlo(r, *slo)) ++s.good;
    if (!r.ok()) {
      ++s.failed;
      ++s.failures[std::string(FailureKindName(r.failure))];
      if (r.failure == FailureKind::kHttpStatus) ++s.http_statuses[r.http_status];
      continue;
    }
    ++s.completed;
    if (!r.usage_reported) ++s.usage_missing;
    s.input_tokens += r.input_tokens;
    s.output_tokens += r.output_tokens;
    if (auto v = r.ttft_s()) ttft.push_back(*v);
    if (auto v = r.tpot_s()) tpot.push_back(*v);
    const auto gaps = r.itl_s();
    itl.insert(itl.end(), gaps.begin(), gaps.end());
    e2el.push_back(r.end_s);
  }
  s.ttft = Distribute(ttft);
  s.tpot = Distribute(tpot);
  s.itl = Distribute(itl);
  s.e2el = Distribute(e2el);
  if (duration_s > 0) {
    s.request_throughput = s.completed / duration_s;
    s.output_throughput = static_cast<double>(s.output_tokens) / duration_s;
    s.total_token_throughput = static_cast<double>(s.input_tokens + s.output_tokens) / duration_s;
    s.goodput = s.good / duration_s;
  }
  if (s.sent > 0) s.attainment = static_cast<double>(s.good) / s.sent;
  return s;
}

}  // namespace tandem::bench
