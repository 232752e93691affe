// The controller's readers of Prometheus data (controller/sources/): the text exposition format
// that the direct scrape gets from /metrics (ParsePromText, then the PromQL-style helpers), the
// ScrapeSource reading two scrapes of a router and a decode worker as the control loop does, and,
// for input that starts with '{', PromQLSource reading it as every query's answer from the
// Prometheus HTTP API.
//
// Input: the exposition; a form feed (0x0C) splits it into the first scrape and the second
// (otherwise both scrapes are the same text). Checked: what parses keeps its samples' names and
// label names valid; cumulative buckets come sorted by bound.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "controller/sources/prom_text.h"
#include "controller/sources/promql_source.h"
#include "controller/sources/scrape_source.h"
#include "fuzz_support.h"

namespace {

using namespace tandem::controller;

bool IsNameChar(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
}

void UseExposition(const PromExposition& e) {
  for (const PromSample& s : e.samples) {
    FUZZ_CHECK(!s.name.empty() && IsNameChar(s.name[0], true));
    for (char c : s.name) FUZZ_CHECK(IsNameChar(c, false));
    for (const auto& [name, value] : s.labels) FUZZ_CHECK(!name.empty());
    (void)e.TypeOf(s.name);
  }
  if (e.samples.empty()) return;
  const PromSample& first = e.samples.front();
  LabelMatchers matchers;
  for (const auto& [name, value] : first.labels) matchers.push_back(LabelMatcher::Eq(name, value));
  (void)SumSamples(e.samples, first.name, matchers);
  for (const auto& [family, type] : e.types) {
    if (type != PromType::kHistogram) continue;
    auto buckets = CumulativeBuckets(e.samples, family);
    if (!buckets.ok()) continue;
    for (size_t i = 1; i < buckets->size(); ++i) {
      FUZZ_CHECK(!((*buckets)[i].upper_bound < (*buckets)[i - 1].upper_bound));
    }
    for (double q : {-0.5, 0.0, 0.5, 0.99, 1.0, 2.0}) (void)HistogramQuantile(q, *buckets);
  }
}

void Scrape(std::string_view first, std::string_view second) {
  std::string scrape[2] = {std::string(first), std::string(second)};
  int read = 0;
  ScrapeSourceOptions options;
  options.max_parallel = 1;  // fetch on this thread
  options.fetch = [&](const std::string&, std::chrono::milliseconds) -> absl::StatusOr<std::string> {
    return scrape[read];
  };
  ScrapeSource source(
      [] { return std::vector<ScrapeTarget>{{"http://router/metrics", "router"}, {"http://decode/metrics", "decode"}}; },
      options);
  (void)source.Read(10.0);
  read = 1;
  (void)source.Read(25.0);
}

void QueryPrometheus(std::string_view body) {
  PromQLSourceOptions options;
  options.base_url = "http://prometheus:9090";
  options.fetch = [&](const std::string&, std::chrono::milliseconds) -> absl::StatusOr<tandem::HttpClientResponse> {
    tandem::HttpClientResponse response;
    response.status = 200;
    response.body = std::string(body);
    return response;
  };
  auto source = PromQLSource::Create(std::move(options));
  FUZZ_CHECK(source.ok());
  (void)(*source)->Read(100.0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tandem::fuzz::QuietLogs();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (!text.empty() && text[0] == '{') {
    QueryPrometheus(text);
    return 0;
  }
  auto exposition = ParsePromText(text);
  if (exposition.ok()) UseExposition(*exposition);
  (void)ParsePromValue(text.substr(0, 32));
  const size_t cut = text.find('\f');
  if (cut == std::string_view::npos) {
    Scrape(text, text);
  } else {
    Scrape(text.substr(0, cut), text.substr(cut + 1));
  }
  return 0;
}
