#include "controller/sources/scrape_source.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <optional>
#include <set>
#include <thread>
#include <tuple>
#include <utility>

#include "common/check.h"
#include "common/http_client.h"
#include "common/logging.h"
#include "common/strings.h"

namespace tandem::controller {
namespace {

constexpr std::string_view kRouterRole = "router";

bool IsWorkerRole(std::string_view role) { return role == "prefill" || role == "decode" || role == "mixed"; }

// A series' identity (name and label set), unambiguous whatever the label values hold.
std::string SeriesKey(const PromSample& s) {
  std::string key = s.name;
  for (const auto& [name, value] : s.labels) {
    key.push_back('\0');
    key.append(name);
    key.push_back('\0');
    key.append(std::to_string(value.size()));
    key.push_back(':');
    key.append(value);
  }
  return key;
}

// Series that only go up: a counter, a histogram's buckets, sum and count, a summary's sum and
// count, and untyped `_total` series.
bool IsCounterLike(const PromExposition& e, std::string_view name) {
  switch (e.TypeOf(name)) {
    case PromType::kCounter:
    case PromType::kHistogram:
      return true;
    case PromType::kSummary:
      return !e.types.contains(name);  // _sum and _count, not the quantile series
    case PromType::kGauge:
      return false;
    case PromType::kUntyped:
      return name.ends_with("_total");
  }
  return false;
}

// True when a counter-like series has a lower value than in the previous scrape.
bool CounterWentDown(const ScrapeSource::Scrape& previous, const ScrapeSource::Scrape& current) {
  for (const PromSample& s : current.exposition.samples) {
    if (!IsCounterLike(current.exposition, s.name)) continue;
    auto it = previous.by_series.find(SeriesKey(s));
    if (it != previous.by_series.end() && s.value < it->second) return true;
  }
  return false;
}

// Per-second increase of every counter-like series since `previous` (a series new since then
// started at 0), as samples with the same name and labels.
std::vector<PromSample> RateSamples(const ScrapeSource::Scrape& previous, const ScrapeSource::Scrape& current) {
  const double dt = current.time_s - previous.time_s;
  std::vector<PromSample> rates;
  for (const PromSample& s : current.exposition.samples) {
    if (!IsCounterLike(current.exposition, s.name)) continue;
    auto it = previous.by_series.find(SeriesKey(s));
    const double before = it == previous.by_series.end() ? 0.0 : it->second;
    rates.push_back({s.name, s.labels, (s.value - before) / dt, std::nullopt});
  }
  return rates;
}

// Samples of worker targets carry the target's role, whatever role label they had.
void AppendWithRole(const std::vector<PromSample>& samples, const std::string& role, std::vector<PromSample>* out) {
  for (const PromSample& s : samples) {
    out->push_back(s);
    out->back().labels["role"] = role;
  }
}

double Value(std::optional<double> v) { return v.value_or(kNoData); }

// a / b, NaN when either is missing or b is not positive.
double Ratio(std::optional<double> a, std::optional<double> b) {
  if (!a || !b || !(*b > 0)) return kNoData;
  return *a / *b;
}

// PromQL's avg(): the mean over matching series.
double Average(const std::vector<PromSample>& samples, std::string_view name, const LabelMatchers& matchers) {
  double sum = 0;
  int n = 0;
  for (const PromSample& s : samples) {
    if (s.name != name || !MatchesAll(s.labels, matchers)) continue;
    sum += s.value;
    ++n;
  }
  return n > 0 ? sum / n : kNoData;
}

double Quantile(double q, const std::vector<PromSample>& rates, std::string_view histogram) {
  auto buckets = CumulativeBuckets(rates, histogram);
  if (!buckets.ok()) {
    GetLogger("controller")->warn("scrape: histogram unusable histogram={} error=\"{}\"", histogram,
                                  buckets.status().message());
    return kNoData;
  }
  return HistogramQuantile(q, *std::move(buckets));
}

// What one read gathered, by kind: current values and per-second rates, router and workers apart
// (the router's tandem_router_workers has a role label of its own).
struct Gathered {
  std::vector<PromSample> router_now, router_rates, worker_now, worker_rates;
  std::vector<PromSample> router_length_rates;  // over ScrapeSourceOptions::length_window_s
  double window_s = 0;
  // Ready workers as the routers count them: the most any one router counts (routers serving
  // the same workers each count all of them; a sum would count every worker once per router).
  InstanceCounts ready;
};

// A router's count of its ready workers of `roles`.
int ReadyOf(const std::vector<PromSample>& samples, const std::vector<std::string>& roles) {
  return static_cast<int>(std::llround(SumSamples(samples, "tandem_router_workers",
                                                  {LabelMatcher::Eq("state", "ready"), LabelMatcher::AnyOf("role", roles)})
                                           .value_or(0)));
}

Signals Compute(const Gathered& g, double now_s) {
  const LabelMatchers prefill_roles = {LabelMatcher::Eq("role", "prefill")};
  const LabelMatchers prefill_capable = {LabelMatcher::AnyOf("role", {"prefill", "mixed"})};
  const LabelMatchers decode_roles = {LabelMatcher::AnyOf("role", {"decode", "mixed"})};
  auto with = [](LabelMatchers m, LabelMatcher extra) {
    m.push_back(std::move(extra));
    return m;
  };

  Signals s;
  s.time_s = now_s;
  s.window_s = g.window_s;

  const auto arrivals = SumSamples(g.router_rates, "tandem_router_prompt_tokens_count");
  const auto prompt_tokens = SumSamples(g.router_rates, "tandem_router_prompt_tokens_sum");
  s.arrival_rate = Value(arrivals);
  s.prompt_token_rate = Value(prompt_tokens);
  s.prompt_tokens_mean = Ratio(prompt_tokens, arrivals);
  s.output_tokens_mean = Ratio(SumSamples(g.router_rates, "tandem_router_generated_tokens_sum"),
                               SumSamples(g.router_rates, "tandem_router_generated_tokens_count"));
  for (auto [q, prompt, output] : {std::tuple{0.5, &Signals::prompt_tokens_p50, &Signals::output_tokens_p50},
                                   std::tuple{0.9, &Signals::prompt_tokens_p90, &Signals::output_tokens_p90},
                                   std::tuple{0.99, &Signals::prompt_tokens_p99, &Signals::output_tokens_p99}}) {
    s.*prompt = Quantile(q, g.router_length_rates, "tandem_router_prompt_tokens");
    s.*output = Quantile(q, g.router_length_rates, "tandem_router_generated_tokens");
  }
  s.ttft_p50 = Quantile(0.5, g.router_rates, "tandem_router_ttft_seconds");
  s.ttft_p90 = Quantile(0.9, g.router_rates, "tandem_router_ttft_seconds");
  s.ttft_p99 = Quantile(0.99, g.router_rates, "tandem_router_ttft_seconds");
  s.itl_p50 = Quantile(0.5, g.router_rates, "tandem_router_itl_seconds");
  s.itl_p99 = Quantile(0.99, g.router_rates, "tandem_router_itl_seconds");
  s.tpot_p90 = Quantile(0.9, g.router_rates, "tandem_router_tpot_seconds");
  s.tpot_p99 = Quantile(0.99, g.router_rates, "tandem_router_tpot_seconds");
  s.queue_p99 = Quantile(0.99, g.router_rates, "tandem_router_queue_seconds");

  s.inflight_requests = Value(SumSamples(g.router_now, "tandem_router_inflight_requests"));
  s.queued_prefill_tokens = Value(SumSamples(g.worker_now, "tandem_worker_queued_prefill_tokens", prefill_capable));
  s.kv_utilization =
      Ratio(SumSamples(g.worker_now, "tandem_worker_kv_blocks",
                       with(decode_roles, LabelMatcher::AnyOf("state", {"used", "reserved"}))),
            SumSamples(g.worker_now, "tandem_worker_kv_blocks", decode_roles));

  constexpr std::string_view kTokens = "tandem_worker_tokens_total";
  constexpr std::string_view kBusy = "tandem_worker_busy_seconds_total";
  const auto hits = SumSamples(g.worker_rates, "tandem_worker_prefix_cache_hit_tokens_total");
  const auto computed = SumSamples(g.worker_rates, kTokens, {LabelMatcher::Eq("phase", "prefill")});
  if (hits && computed) s.prompt_cached_fraction = Ratio(hits, *hits + *computed);
  s.prefill_tokens_per_busy_second =
      Ratio(SumSamples(g.worker_rates, kTokens, with(prefill_roles, LabelMatcher::Eq("phase", "prefill"))),
            SumSamples(g.worker_rates, kBusy, prefill_roles));
  s.decode_tokens_per_busy_second =
      Ratio(SumSamples(g.worker_rates, kTokens, with(decode_roles, LabelMatcher::Eq("phase", "decode"))),
            SumSamples(g.worker_rates, kBusy, decode_roles));
  s.prefill_busy_fraction = Average(g.worker_rates, kBusy, prefill_roles);
  s.decode_busy_fraction = Average(g.worker_rates, kBusy, decode_roles);
  const LabelMatchers decode_iterations = with(decode_roles, LabelMatcher::Eq("phase", "decode"));
  s.decode_iteration_mean_s =
      Ratio(SumSamples(g.worker_rates, "tandem_worker_iteration_seconds_sum", decode_iterations),
            SumSamples(g.worker_rates, "tandem_worker_iteration_seconds_count", decode_iterations));

  s.ready = g.ready;
  return s;
}

}  // namespace

ScrapeSource::ScrapeSource(ScrapeTargetsFn targets, ScrapeSourceOptions options)
    : targets_(std::move(targets)), options_(std::move(options)) {
  TANDEM_CHECK(targets_ != nullptr) << "ScrapeSource needs a targets function";
  if (!options_.fetch) {
    options_.fetch = [](const std::string& url, std::chrono::milliseconds timeout) {
      return HttpGetBody(url, timeout);
    };
  }
  options_.max_parallel = std::max(1, options_.max_parallel);
}

ScrapeSource::~ScrapeSource() = default;

namespace {

// This read's targets, each URL once, known roles only (the others are counted in `failed`).
std::vector<ScrapeTarget> UsableTargets(std::vector<ScrapeTarget> listed, int& failed, bool& router_listed) {
  std::vector<ScrapeTarget> targets;
  std::set<std::string, std::less<>> seen;
  for (ScrapeTarget& t : listed) {
    if (t.role != kRouterRole && !IsWorkerRole(t.role)) {
      GetLogger("controller")->warn("scrape: skipping target with unknown role url={} role={}", t.url, t.role);
      ++failed;
      continue;
    }
    if (!seen.insert(t.url).second) continue;
    router_listed |= t.role == kRouterRole;
    targets.push_back(std::move(t));
  }
  return targets;
}

// Fetches and parses every target, up to options.max_parallel at once; every slot is written by
// one thread only.
std::vector<absl::StatusOr<PromExposition>> FetchAll(const std::vector<ScrapeTarget>& targets,
                                                     const ScrapeSourceOptions& options) {
  std::vector<absl::StatusOr<PromExposition>> results(targets.size(), absl::UnknownError("not scraped"));
  std::atomic<size_t> next{0};
  auto scrape_some = [&] {
    for (size_t i = next++; i < targets.size(); i = next++) {
      absl::StatusOr<std::string> body = options.fetch(targets[i].url, options.timeout);
      results[i] = body.ok() ? ParsePromText(*body) : absl::StatusOr<PromExposition>(body.status());
    }
  };
  std::vector<std::thread> threads;
  const size_t extra = std::min<size_t>(targets.size(), options.max_parallel) - 1;
  for (size_t t = 0; t < extra; ++t) threads.emplace_back(scrape_some);
  scrape_some();
  for (std::thread& t : threads) t.join();
  return results;
}

}  // namespace

absl::StatusOr<Signals> ScrapeSource::Read(double now_s) {
  auto log = GetLogger("controller");

  int failed = 0;
  bool router_listed = false;
  std::vector<ScrapeTarget> targets = UsableTargets(targets_(), failed, router_listed);
  if (!router_listed) {
    failed_scrapes_total_ += failed;
    last_failed_scrapes_ = failed;
    return absl::FailedPreconditionError(StrCat("no router among the ", targets.size(), " scrape targets"));
  }

  std::vector<absl::StatusOr<PromExposition>> results = FetchAll(targets, options_);

  Gathered g;
  std::string router_error;
  bool router_answered = false;
  std::map<std::string, Scrape, std::less<>> kept;
  for (size_t i = 0; i < targets.size(); ++i) {
    const ScrapeTarget& target = targets[i];
    auto previous = previous_.find(target.url);
    if (!results[i].ok()) {
      log->warn("scrape: target failed url={} role={} error=\"{}\"", target.url, target.role,
                results[i].status().message());
      ++failed;
      if (target.role == kRouterRole && router_error.empty()) {
        router_error = StrCat(target.url, ": ", results[i].status().message());
      }
      // Its baseline stays: the next successful scrape's rates span both intervals.
      if (previous != previous_.end()) kept.emplace(target.url, std::move(previous->second));
      continue;
    }
    Scrape current{target.role, now_s, *std::move(results[i]), {}};
    for (const PromSample& s : current.exposition.samples) current.by_series[SeriesKey(s)] = s.value;

    std::vector<PromSample> rates;
    bool restarted = false;
    if (previous != previous_.end() && previous->second.role == target.role && previous->second.time_s < now_s) {
      if ((restarted = CounterWentDown(previous->second, current))) {
        log->info("scrape: counters went down, restarting the baseline url={} role={}", target.url, target.role);
        ++counter_resets_total_;
      } else {
        rates = RateSamples(previous->second, current);
        if (target.role == kRouterRole) g.window_s = std::max(g.window_s, now_s - previous->second.time_s);
      }
    }
    if (target.role == kRouterRole) {
      router_answered = true;
      g.ready.prefill = std::max(g.ready.prefill, ReadyOf(current.exposition.samples, {"prefill"}));
      g.ready.decode = std::max(g.ready.decode, ReadyOf(current.exposition.samples, {"decode", "mixed"}));
      g.router_now.insert(g.router_now.end(), current.exposition.samples.begin(), current.exposition.samples.end());
      g.router_rates.insert(g.router_rates.end(), rates.begin(), rates.end());
      std::vector<PromSample> lengths = LengthRates(target.url, current, restarted);
      g.router_length_rates.insert(g.router_length_rates.end(), lengths.begin(), lengths.end());
    } else {
      AppendWithRole(current.exposition.samples, target.role, &g.worker_now);
      AppendWithRole(rates, target.role, &g.worker_rates);
    }
    kept.emplace(target.url, std::move(current));
  }
  previous_ = std::move(kept);  // targets no longer listed are forgotten
  std::erase_if(length_history_, [&](const auto& h) { return !previous_.contains(h.first); });
  failed_scrapes_total_ += failed;
  last_failed_scrapes_ = failed;

  if (!router_answered) return absl::UnavailableError(StrCat("the router did not answer the scrape: ", router_error));
  return Compute(g, now_s);
}

std::vector<PromSample> ScrapeSource::LengthRates(const std::string& url, const Scrape& current, bool restart) {
  std::deque<Scrape>& history = length_history_[url];
  if (restart) history.clear();
  const auto is_length = [](std::string_view name) {
    return name.starts_with("tandem_router_prompt_tokens") || name.starts_with("tandem_router_generated_tokens");
  };
  Scrape kept{current.role, current.time_s, {}, {}};
  for (const auto& [family, type] : current.exposition.types) {  // RateSamples tells counters by their type
    if (is_length(family)) kept.exposition.types.emplace(family, type);
  }
  for (const PromSample& s : current.exposition.samples) {
    if (is_length(s.name)) {
      kept.exposition.samples.push_back(s);
      kept.by_series[SeriesKey(s)] = s.value;
    }
  }
  // The baseline: the newest scrape at least the window old, else the oldest there is.
  while (history.size() > 1 && history[1].time_s <= current.time_s - options_.length_window_s) history.pop_front();
  std::vector<PromSample> rates;
  if (!history.empty() && history.front().time_s < current.time_s) rates = RateSamples(history.front(), kept);
  history.push_back(std::move(kept));
  return rates;
}

}  // namespace tandem::controller
