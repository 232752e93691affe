#include "bench/report.h"

#include <cmath>

#include "bench/arrivals.h"
#include "common/strings.h"

namespace tandem::bench {
namespace {

using Json = nlohmann::json;

void Line(std::string* out, std::string_view label, const std::string& value) {
  *out += fmt::format("{:<40} {:<10}\n", label, value);
}
void Line(std::string* out, std::string_view label, double value) { Line(out, label, fmt::format("{:.2f}", value)); }
void Line(std::string* out, std::string_view label, int64_t value) { Line(out, label, StrCat(value)); }

void Section(std::string* out, std::string_view title) { *out += fmt::format("{:-^50}\n", title); }

void DistributionLines(std::string* out, std::string_view title, std::string_view name, const Distribution& d) {
  Section(out, title);
  Line(out, StrCat("Mean ", name, " (ms):"), d.mean);
  Line(out, StrCat("Median ", name, " (ms):"), d.median);
  Line(out, StrCat("P90 ", name, " (ms):"), d.p90);
  Line(out, StrCat("P99 ", name, " (ms):"), d.p99);
}

double Round3(double v) { return std::round(v * 1000.0) / 1000.0; }

}  // namespace

std::string FormatSummaryTable(const Summary& s, const std::string& title) {
  std::string out = fmt::format("{:=^50}\n", StrCat(" ", title, " "));
  Line(&out, "Successful requests:", int64_t{s.completed});
  Line(&out, "Failed requests:", int64_t{s.failed});
  Line(&out, "Benchmark duration (s):", s.duration_s);
  Line(&out, "Total input tokens:", s.input_tokens);
  Line(&out, "Total generated tokens:", s.output_tokens);
  Line(&out, "Request throughput (req/s):", s.request_throughput);
  Line(&out, "Output token throughput (tok/s):", s.output_throughput);
  Line(&out, "Total token throughput (tok/s):", s.total_token_throughput);
  DistributionLines(&out, "Time to First Token", "TTFT", s.ttft);
  DistributionLines(&out, "Time per Output Token (excl. 1st token)", "TPOT", s.tpot);
  DistributionLines(&out, "Inter-token Latency", "ITL", s.itl);
  DistributionLines(&out, "End-to-end Latency", "E2EL", s.e2el);
  if (s.slo) {
    Section(&out, "Goodput");
    Line(&out, "SLOs (ms):", s.slo->Describe());
    Line(&out, "Good requests:", int64_t{s.good});
    Line(&out, "SLO attainment (%):", 100.0 * s.attainment);
    Line(&out, "Request goodput (req/s):", s.goodput);
  }
  if (s.failed > 0 || s.prompt_token_mismatches > 0 || s.usage_missing > 0) {
    Section(&out, "Failures");
    for (const auto& [kind, n] : s.failures) {
      if (kind == FailureKindName(FailureKind::kHttpStatus)) continue;
      Line(&out, StrCat(kind, ":"), int64_t{n});
    }
    for (const auto& [code, n] : s.http_statuses) Line(&out, StrCat("HTTP ", code, ":"), int64_t{n});
    if (s.prompt_token_mismatches > 0) {
      Line(&out, "Prompt token count mismatches:", int64_t{s.prompt_token_mismatches});
    }
    if (s.usage_missing > 0) Line(&out, "Responses without usage:", int64_t{s.usage_missing});
  }
  out += std::string(50, '=') + "\n";
  return out;
}

Json DistributionJson(const Distribution& d) {
  return Json{{"count", d.count},         {"mean_ms", Round3(d.mean)}, {"median_ms", Round3(d.median)},
              {"p90_ms", Round3(d.p90)},  {"p99_ms", Round3(d.p99)},   {"std_ms", Round3(d.std)},
              {"max_ms", Round3(d.max)}};
}

Json SummaryJson(const Summary& s) {
  Json j = {{"sent", s.sent},
            {"completed", s.completed},
            {"failed", s.failed},
            {"duration_s", Round3(s.duration_s)},
            {"total_input_tokens", s.input_tokens},
            {"total_output_tokens", s.output_tokens},
            {"request_throughput", Round3(s.request_throughput)},
            {"output_throughput", Round3(s.output_throughput)},
            {"total_token_throughput", Round3(s.total_token_throughput)},
            {"ttft", DistributionJson(s.ttft)},
            {"tpot", DistributionJson(s.tpot)},
            {"itl", DistributionJson(s.itl)},
            {"e2el", DistributionJson(s.e2el)},
            {"failures", s.failures},
            {"prompt_token_mismatches", s.prompt_token_mismatches},
            {"usage_missing", s.usage_missing}};
  Json statuses = Json::object();
  for (const auto& [code, n] : s.http_statuses) statuses[StrCat(code)] = n;
  j["http_statuses"] = std::move(statuses);
  if (s.slo) {
    Json slo = Json::object();
    if (s.slo->ttft_ms) slo["ttft_ms"] = *s.slo->ttft_ms;
    if (s.slo->tpot_ms) slo["tpot_ms"] = *s.slo->tpot_ms;
    if (s.slo->e2el_ms) slo["e2el_ms"] = *s.slo->e2el_ms;
    j["goodput"] = {{"slo", std::move(slo)},
                    {"good", s.good},
                    {"attainment", Round3(s.attainment)},
                    {"request_goodput", Round3(s.goodput)}};
  }
  return j;
}

Json RecordJson(const RequestRecord& r, const std::optional<SloSpec>& slo) {
  auto ms = [](std::optional<double> s) { return s ? Json(Round3(*s * 1e3)) : Json(nullptr); };
  Json itl = Json::array();
  for (double gap : r.itl_s()) itl.push_back(Round3(gap * 1e3));
  Json j = {{"index", r.index},
            {"phase", r.phase},
            {"scheduled_s", Round3(r.scheduled_s)},
            {"sent_s", Round3(r.sent_s)},
            {"input_tokens", r.input_tokens},
            {"output_tokens_requested", r.output_tokens_requested},
            {"output_tokens", r.output_tokens},
            {"prompt_tokens_reported", r.prompt_tokens_reported >= 0 ? Json(r.prompt_tokens_reported) : Json(nullptr)},
            {"ttft_ms", ms(r.ttft_s())},
            {"tpot_ms", ms(r.tpot_s())},
            {"e2el_ms", Round3(r.end_s * 1e3)},
            {"itl_ms", std::move(itl)},
            {"ok", r.ok()}};
  if (!r.ok()) {
    j["failure"] = std::string(FailureKindName(r.failure));
    j["error"] = r.error;
  }
  if (r.http_status != 0) j["http_status"] = r.http_status;
  if (slo) j["good"] = MeetsSlo(r, *slo);
  return j;
}

Json SearchJson(const GoodputSearchOptions& o, const GoodputSearchResult& result) {
  Json probes = Json::array();
  for (const GoodputProbe& p : result.probes) {
    probes.push_back({{"rate", p.rate},
                      {"attainments", p.attainments},
                      {"mean_attainment", Round3(p.mean_attainment)},
                      {"passed", p.passed}});
  }
  return Json{{"attainment_target", o.attainment},
              {"rate_min", o.rate_min},
              {"rate_max", o.rate_max},
              {"iterations", o.iterations},
              {"repeats", o.repeats},
              {"resolution", (o.rate_max - o.rate_min) / std::pow(2.0, o.iterations)},
              {"probes", std::move(probes)},
              {"max_rate", result.max_rate ? Json(*result.max_rate) : Json(nullptr)},
              {"hit_rate_max", result.hit_rate_max}};
}

std::string FormatProbe(const GoodputProbe& p, double target) {
  std::string runs;
  for (double a : p.attainments) runs += fmt::format("{}{:.1f}%", runs.empty() ? "" : " ", 100 * a);
  return fmt::format("probe {:>8} req/s: attainment {:5.1f}% (runs: {}) -> {} (target {:.0f}%)\n",
                     FormatRate(p.rate), 100 * p.mean_attainment, runs, p.passed ? "pass" : "FAIL", 100 * target);
}

std::string FormatSearchResult(const GoodputSearchOptions& o, const GoodputSearchResult& r) {
  const double resolution = (o.rate_max - o.rate_min) / std::pow(2.0, o.iterations);
  if (!r.max_rate) {
    return fmt::format("No rate in [{}, {}] req/s reaches {:.0f}% SLO attainment (even --rate-min fails).\n",
                       FormatRate(o.rate_min), FormatRate(o.rate_max), 100 * o.attainment);
  }
  if (r.hit_rate_max) {
    return fmt::format("--rate-max {} req/s still reaches {:.0f}% SLO attainment: the goodput is at least that; "
                       "raise --rate-max.\n",
                       FormatRate(o.rate_max), 100 * o.attainment);
  }
  return fmt::format("Goodput (max rate with >= {:.0f}% SLO attainment): {} req/s (resolution {} req/s)\n",
                     100 * o.attainment, FormatRate(*r.max_rate), FormatRate(resolution));
}

}  // namespace tandem::bench
