#include "controller/sources/scrape_source.h"

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "metrics/registry.h"

namespace tandem::controller {
namespace {

using ::testing::HasSubstr;

// The router's Signals-relevant metrics, rendered by the real registry.
struct FakeRouter {
  metrics::MetricsRegistry registry;
  metrics::HistogramFamily& prompt_tokens =
      registry.AddHistogram("tandem_router_prompt_tokens", "Prompt length", {16, 256, 4096});
  metrics::HistogramFamily& generated_tokens =
      registry.AddHistogram("tandem_router_generated_tokens", "Generated", {16, 256, 4096});
  metrics::HistogramFamily& ttft = registry.AddHistogram("tandem_router_ttft_seconds", "TTFT", {0.1, 0.5, 1});
  metrics::HistogramFamily& itl = registry.AddHistogram("tandem_router_itl_seconds", "ITL", {0.01, 0.05, 0.1});
  metrics::HistogramFamily& queue = registry.AddHistogram("tandem_router_queue_seconds", "Queue", {0.1, 1, 10});
  metrics::Gauge& inflight = registry.AddGauge("tandem_router_inflight_requests", "In flight").With();
  metrics::GaugeFamily& workers = registry.AddGauge("tandem_router_workers", "Workers", {"role", "state"});

  void Arrive(int n, double prompt_tokens_each) {
    for (int i = 0; i < n; ++i) prompt_tokens.With().Observe(prompt_tokens_each);
  }
  void Finish(int n, double generated_each) {
    for (int i = 0; i < n; ++i) generated_tokens.With().Observe(generated_each);
  }
  static void ObserveN(metrics::HistogramFamily& h, int n, double v) {
    for (int i = 0; i < n; ++i) h.With().Observe(v);
  }
};

// A worker's metrics, each sample labelled with its role (or, `with_role_label` false, none,
// as a worker that predates the label).
struct FakeWorker {
  explicit FakeWorker(std::string role, bool with_role_label = true)
      : role(std::move(role)),
        labels(with_role_label ? std::vector<std::string>{"role"} : std::vector<std::string>{}),
        mine(with_role_label ? metrics::LabelValues{this->role} : metrics::LabelValues{}) {}

  std::string role;
  std::vector<std::string> labels;
  metrics::LabelValues mine;
  metrics::MetricsRegistry registry;
  metrics::GaugeFamily& queued = registry.AddGauge("tandem_worker_queued_prefill_tokens", "Queued", labels);
  metrics::GaugeFamily& kv = registry.AddGauge("tandem_worker_kv_blocks", "KV", With("state"));
  metrics::CounterFamily& tokens = registry.AddCounter("tandem_worker_tokens_total", "Tokens", With("phase"));
  metrics::CounterFamily& busy = registry.AddCounter("tandem_worker_busy_seconds_total", "Busy", labels);
  metrics::CounterFamily& hits = registry.AddCounter("tandem_worker_prefix_cache_hit_tokens_total", "Hits", labels);
  metrics::HistogramFamily& iteration =
      registry.AddHistogram("tandem_worker_iteration_seconds", "Iteration", {0.01, 0.1, 1}, With("phase"));

  std::vector<std::string> With(std::string extra) const {
    auto l = labels;
    l.push_back(std::move(extra));
    return l;
  }
  metrics::LabelValues Mine(std::string extra = "") const {
    auto v = mine;
    if (!extra.empty()) v.push_back(std::move(extra));
    return v;
  }
  void SetQueued(double v) { queued.With(Mine()).Set(v); }
  void SetKv(double free, double used, double reserved) {
    kv.With(Mine("free")).Set(free);
    kv.With(Mine("used")).Set(used);
    kv.With(Mine("reserved")).Set(reserved);
  }
  void Run(std::string phase, double n_tokens, double busy_s) {
    tokens.With(Mine(std::move(phase))).Increment(n_tokens);
    busy.With(Mine()).Increment(busy_s);
  }
  void HitPrefixCache(double n_tokens) { hits.With(Mine()).Increment(n_tokens); }
  void Iterate(const std::string& phase, int n, double seconds_each) {
    metrics::Histogram& h = iteration.With(Mine(phase));
    for (int i = 0; i < n; ++i) h.Observe(seconds_each);
  }
};

// Serves each URL from a function called at fetch time (fetches run on several threads).
class FakeFetch {
 public:
  void Serve(const std::string& url, std::function<absl::StatusOr<std::string>()> body) {
    std::lock_guard lock(mu_);
    bodies_[url] = std::move(body);
  }
  void Serve(const std::string& url, const metrics::MetricsRegistry* registry) {
    Serve(url, [registry]() -> absl::StatusOr<std::string> { return registry->Render(); });
  }
  int calls(const std::string& url) {
    std::lock_guard lock(mu_);
    return calls_[url];
  }
  ScrapeFetchFn fn() {
    return [this](const std::string& url, std::chrono::milliseconds) -> absl::StatusOr<std::string> {
      std::function<absl::StatusOr<std::string>()> body;
      {
        std::lock_guard lock(mu_);
        ++calls_[url];
        auto it = bodies_.find(url);
        if (it == bodies_.end()) return absl::UnavailableError("connection refused");
        body = it->second;
      }
      return body();
    };
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::function<absl::StatusOr<std::string>()>> bodies_;
  std::map<std::string, int> calls_;
};

constexpr char kRouterUrl[] = "http://router:8000/metrics";

class ScrapeSourceTest : public ::testing::Test {
 protected:
  ScrapeSourceTest() {
    fetch_.Serve(kRouterUrl, &router_.registry);
    targets_.push_back({kRouterUrl, "router"});
  }
  void AddWorker(const std::string& url, FakeWorker* w) {
    fetch_.Serve(url, &w->registry);
    targets_.push_back({url, w->role});
  }
  void RemoveTarget(const std::string& url) {
    std::erase_if(targets_, [&](const ScrapeTarget& t) { return t.url == url; });
  }
  std::unique_ptr<ScrapeSource> MakeSource() {
    ScrapeSourceOptions o;
    o.fetch = fetch_.fn();
    return std::make_unique<ScrapeSource>([this] { return targets_; }, o);
  }

  FakeRouter router_;
  FakeFetch fetch_;
  std::vector<ScrapeTarget> targets_;
};

TEST_F(ScrapeSourceTest, FirstReadFillsGaugesAndLeavesRatesEmpty) {
  FakeWorker p1("prefill"), d1("decode"), m1("mixed");
  AddWorker("http://p1/metrics", &p1);
  AddWorker("http://d1/metrics", &d1);
  AddWorker("http://m1/metrics", &m1);
  router_.inflight.Set(7);
  router_.workers.With({"prefill", "ready"}).Set(2);
  router_.workers.With({"prefill", "draining"}).Set(1);
  router_.workers.With({"decode", "ready"}).Set(3);
  router_.workers.With({"mixed", "ready"}).Set(1);
  router_.Arrive(50, 100);                  // counters already up: not a rate without a baseline
  router_.ttft.With().Observe(0.2);
  p1.SetQueued(500);
  m1.SetQueued(200);
  d1.SetQueued(999);                        // a decode worker's queue is not prefill pressure
  p1.SetKv(0, 100, 0);                      // a prefill worker's KV is not decode pressure
  d1.SetKv(60, 30, 10);
  m1.SetKv(50, 50, 0);
  p1.Run("prefill", 1000, 3);

  auto source = MakeSource();
  auto s = source->Read(100);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->time_s, 100);
  EXPECT_EQ(s->window_s, 0);
  EXPECT_EQ(s->inflight_requests, 7);
  EXPECT_EQ(s->queued_prefill_tokens, 700);
  EXPECT_DOUBLE_EQ(s->kv_utilization, (30 + 10 + 50) / 200.0);
  EXPECT_EQ(s->ready, (InstanceCounts{.prefill = 2, .decode = 4}));
  for (double rate : {s->arrival_rate, s->prompt_tokens_mean, s->prompt_token_rate, s->output_tokens_mean, s->ttft_p50,
                      s->ttft_p99, s->itl_p99, s->queue_p99, s->prefill_tokens_per_busy_second,
                      s->prefill_busy_fraction, s->decode_busy_fraction, s->decode_iteration_mean_s}) {
    EXPECT_TRUE(std::isnan(rate)) << rate;
  }
  EXPECT_EQ(source->last_failed_scrapes(), 0);
}

TEST_F(ScrapeSourceTest, RatesComeFromCounterIncreasesOverTheTimeBetweenScrapes) {
  FakeWorker p1("prefill"), p2("prefill"), d1("decode"), m1("mixed");
  for (auto [url, w] : {std::pair{"http://p1/metrics", &p1}, {"http://p2/metrics", &p2}, {"http://d1/metrics", &d1},
                        {"http://m1/metrics", &m1}}) {
    AddWorker(url, w);
  }
  // History before the first read must not count.
  router_.Arrive(1000, 5000);
  router_.Finish(1000, 2000);
  p1.Run("prefill", 1e6, 500);
  d1.Run("decode", 1e5, 400);
  d1.Iterate("decode", 100, 0.5);
  auto source = MakeSource();
  ASSERT_TRUE(source->Read(100).ok());

  // 10 s: 20 arrivals of 100 prompt tokens, 8 finished (4 × 30, 4 × 90 tokens).
  router_.Arrive(20, 100);
  router_.Finish(4, 30);
  router_.Finish(4, 90);
  p1.Run("prefill", 5000, 5);
  p2.Run("prefill", 3000, 2);
  d1.Run("decode", 400, 8);
  d1.Iterate("decode", 400, 0.02);
  m1.Run("decode", 100, 4);
  m1.Run("prefill", 1000, 0);       // a mixed worker's prefill is not prefill-worker capacity
  m1.Iterate("decode", 100, 0.04);
  m1.Iterate("mixed", 3, 1.0);      // nor are its mixed iterations decode iterations
  auto s = source->Read(110);
  ASSERT_TRUE(s.ok()) << s.status();

  EXPECT_EQ(s->window_s, 10);
  EXPECT_DOUBLE_EQ(s->arrival_rate, 2.0);
  EXPECT_DOUBLE_EQ(s->prompt_token_rate, 200.0);
  EXPECT_DOUBLE_EQ(s->prompt_tokens_mean, 100.0);
  EXPECT_DOUBLE_EQ(s->output_tokens_mean, 60.0);
  // Length quantiles interpolate inside the buckets, as histogram_quantile does: all 20 prompts
  // and all 8 answers fall in (16, 256].
  EXPECT_DOUBLE_EQ(s->prompt_tokens_p50, 16 + 240 * 10.0 / 20);
  EXPECT_DOUBLE_EQ(s->prompt_tokens_p90, 16 + 240 * 18.0 / 20);
  EXPECT_DOUBLE_EQ(s->output_tokens_p50, 16 + 240 * 4.0 / 8);
  EXPECT_DOUBLE_EQ(s->output_tokens_p99, 16 + 240 * 7.92 / 8);
  EXPECT_DOUBLE_EQ(s->prefill_tokens_per_busy_second, 8000.0 / 7.0);
  EXPECT_DOUBLE_EQ(s->prefill_busy_fraction, (0.5 + 0.2) / 2);
  EXPECT_DOUBLE_EQ(s->decode_tokens_per_busy_second, 500.0 / 12.0);
  EXPECT_DOUBLE_EQ(s->decode_busy_fraction, (0.8 + 0.4) / 2);
  EXPECT_NEAR(s->decode_iteration_mean_s, (400 * 0.02 + 100 * 0.04) / 500, 1e-9);

  // A quiet window: rates are zero, means and quantiles have no data.
  s = source->Read(120);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->arrival_rate, 0);
  EXPECT_TRUE(std::isnan(s->prompt_tokens_mean));
  EXPECT_TRUE(std::isnan(s->output_tokens_mean));
  EXPECT_EQ(s->prefill_busy_fraction, 0);
  EXPECT_TRUE(std::isnan(s->prefill_tokens_per_busy_second));  // busy rate 0
  EXPECT_TRUE(std::isnan(s->decode_iteration_mean_s));
  // The length quantiles pool the last 60 s (length_window_s): still the lengths seen above.
  EXPECT_DOUBLE_EQ(s->prompt_tokens_p50, 16 + 240 * 10.0 / 20);
  EXPECT_DOUBLE_EQ(s->output_tokens_p50, 16 + 240 * 4.0 / 8);
  // A minute later, 10 prompts of 2000 tokens: the window holds only those.
  router_.Arrive(10, 2000);
  s = source->Read(200);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->prompt_tokens_p50, 256 + 3840 * 5.0 / 10);
  EXPECT_TRUE(std::isnan(s->output_tokens_p50));  // nothing finished in that minute
}

// Two routers serving the same workers: their traffic adds up, their worker counts do not (each
// counts every worker; the source takes the most any one counts).
TEST_F(ScrapeSourceTest, TwoRoutersTrafficAddsUpButTheirWorkersAreCountedOnce) {
  FakeRouter second;
  constexpr char kSecondUrl[] = "http://router-1:8000/metrics";
  fetch_.Serve(kSecondUrl, &second.registry);
  targets_.push_back({kSecondUrl, "router"});
  for (FakeRouter* r : {&router_, &second}) {
    r->workers.With({"prefill", "ready"}).Set(2);
    r->workers.With({"decode", "ready"}).Set(3);
  }
  second.workers.With({"decode", "ready"}).Set(2);  // it has not heard from one decode worker yet
  auto source = MakeSource();
  ASSERT_TRUE(source->Read(100).ok());
  router_.Arrive(20, 100);
  second.Arrive(10, 400);
  router_.inflight.Set(3);
  second.inflight.Set(4);
  auto s = source->Read(110);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->ready, (InstanceCounts{.prefill = 2, .decode = 3}));
  EXPECT_DOUBLE_EQ(s->arrival_rate, 3.0);
  EXPECT_DOUBLE_EQ(s->prompt_token_rate, (2000.0 + 4000.0) / 10);
  EXPECT_DOUBLE_EQ(s->prompt_tokens_mean, 200.0);
  EXPECT_EQ(s->inflight_requests, 7);
}

TEST_F(ScrapeSourceTest, CachedFractionIsHitTokensOverHitAndComputedPrefillTokensOfEveryWorker) {
  FakeWorker p1("prefill"), d1("decode"), m1("mixed");
  AddWorker("http://p1/metrics", &p1);
  AddWorker("http://d1/metrics", &d1);
  AddWorker("http://m1/metrics", &m1);
  p1.HitPrefixCache(1e6);  // before the baseline: not counted
  auto source = MakeSource();
  ASSERT_TRUE(source->Read(0).ok());

  p1.Run("prefill", 300, 1);
  p1.HitPrefixCache(2400);
  d1.Run("prefill", 100, 1);  // a decode worker's local prefill counts too
  d1.HitPrefixCache(200);
  m1.Run("decode", 50, 1);
  auto s = source->Read(10);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->prompt_cached_fraction, 2600.0 / (2600 + 400));

  // No prompt computed or served in the window: no data, not 0.
  m1.Run("decode", 50, 1);
  s = source->Read(20);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(std::isnan(s->prompt_cached_fraction));
}

TEST_F(ScrapeSourceTest, QuantilesInterpolateInsideTheBucketOfTheWindowsObservations) {
  // Earlier observations, all slow: were they counted, p50 would land in +Inf.
  FakeRouter::ObserveN(router_.ttft, 100, 5.0);
  auto source = MakeSource();
  ASSERT_TRUE(source->Read(0).ok());

  FakeRouter::ObserveN(router_.ttft, 10, 0.05);  // (0, 0.1]
  FakeRouter::ObserveN(router_.ttft, 20, 0.3);   // (0.1, 0.5]
  FakeRouter::ObserveN(router_.ttft, 10, 0.7);   // (0.5, 1]
  FakeRouter::ObserveN(router_.itl, 90, 0.02);   // (0.01, 0.05]
  FakeRouter::ObserveN(router_.itl, 10, 0.07);   // (0.05, 0.1]
  FakeRouter::ObserveN(router_.queue, 4, 20.0);  // all above the last bound
  auto s = source->Read(30);
  ASSERT_TRUE(s.ok()) << s.status();
  // p50: rank 20 of 40; (0.1, 0.5] holds ranks 10..30 → 0.1 + 0.4 × 10/20.
  EXPECT_DOUBLE_EQ(s->ttft_p50, 0.3);
  // p99: rank 39.6; (0.5, 1] holds 30..40 → 0.5 + 0.5 × 9.6/10.
  EXPECT_DOUBLE_EQ(s->ttft_p99, 0.98);
  // itl p50: rank 50 of 100 in (0.01, 0.05], which starts after 0 observations → 0.01 + 0.04 × 50/90.
  EXPECT_NEAR(s->itl_p50, 0.01 + 0.04 * 50.0 / 90.0, 1e-12);
  // itl p99: rank 99 in (0.05, 0.1], 9 of its 10 → 0.05 + 0.05 × 0.9.
  EXPECT_NEAR(s->itl_p99, 0.095, 1e-12);
  // queue p99 in +Inf: the highest finite bound, as histogram_quantile answers.
  EXPECT_EQ(s->queue_p99, 10);
}

TEST_F(ScrapeSourceTest, ACounterGoingDownRestartsThatTargetsBaseline) {
  auto p1 = std::make_unique<FakeWorker>("prefill");
  FakeWorker* current = p1.get();
  fetch_.Serve("http://p1/metrics", [&current]() -> absl::StatusOr<std::string> { return current->registry.Render(); });
  targets_.push_back({"http://p1/metrics", "prefill"});
  p1->Run("prefill", 1e6, 100);
  auto source = MakeSource();
  ASSERT_TRUE(source->Read(100).ok());

  // The worker restarts: a new process whose counters start again from zero.
  auto restarted = std::make_unique<FakeWorker>("prefill");
  restarted->Run("prefill", 50, 1);
  restarted->SetQueued(64);
  current = restarted.get();
  router_.Arrive(10, 10);
  auto s = source->Read(110);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(std::isnan(s->prefill_busy_fraction)) << "a negative increase was used as a rate";
  EXPECT_TRUE(std::isnan(s->prefill_tokens_per_busy_second));
  EXPECT_EQ(s->queued_prefill_tokens, 64);  // gauges still read
  EXPECT_DOUBLE_EQ(s->arrival_rate, 1.0);   // other targets unaffected
  EXPECT_EQ(source->counter_resets_total(), 1);

  restarted->Run("prefill", 900, 3);
  s = source->Read(120);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->prefill_busy_fraction, 0.3);
  EXPECT_DOUBLE_EQ(s->prefill_tokens_per_busy_second, 300);
  EXPECT_EQ(source->counter_resets_total(), 1);
}

TEST_F(ScrapeSourceTest, WorkersComingAndGoingAreCountedOnlyWhileListed) {
  FakeWorker p1("prefill"), p2("prefill");
  AddWorker("http://p1/metrics", &p1);
  AddWorker("http://p2/metrics", &p2);
  p1.SetQueued(10);
  p2.SetQueued(20);
  auto source = MakeSource();
  ASSERT_TRUE(source->Read(0).ok());

  p1.Run("prefill", 100, 5);
  p2.Run("prefill", 100, 1);
  auto s = source->Read(10);
  ASSERT_TRUE(s.ok());
  EXPECT_DOUBLE_EQ(s->prefill_busy_fraction, (0.5 + 0.1) / 2);
  EXPECT_EQ(s->queued_prefill_tokens, 30);

  // p2 leaves: averages over p1 alone.
  RemoveTarget("http://p2/metrics");
  p1.Run("prefill", 100, 2);
  s = source->Read(20);
  ASSERT_TRUE(s.ok());
  EXPECT_DOUBLE_EQ(s->prefill_busy_fraction, 0.2);
  EXPECT_EQ(s->queued_prefill_tokens, 10);
  EXPECT_EQ(fetch_.calls("http://p2/metrics"), 2);

  // p2 comes back (its counters moved while it was away): gauges at once, rates from a new
  // baseline, so the 7 s it accrued while unlisted are not spread over one interval.
  AddWorker("http://p2/metrics", &p2);
  p2.Run("prefill", 100, 7);
  p1.Run("prefill", 100, 4);
  s = source->Read(30);
  ASSERT_TRUE(s.ok());
  EXPECT_DOUBLE_EQ(s->prefill_busy_fraction, 0.4);
  EXPECT_EQ(s->queued_prefill_tokens, 30);

  p2.Run("prefill", 100, 3);
  p1.Run("prefill", 100, 1);
  s = source->Read(40);
  ASSERT_TRUE(s.ok());
  EXPECT_DOUBLE_EQ(s->prefill_busy_fraction, (0.1 + 0.3) / 2);
}

TEST_F(ScrapeSourceTest, AFailingWorkerIsSkippedAndCountedAndKeepsItsBaseline) {
  FakeWorker p1("prefill"), p2("prefill");
  AddWorker("http://p1/metrics", &p1);
  AddWorker("http://p2/metrics", &p2);
  auto source = MakeSource();
  ASSERT_TRUE(source->Read(0).ok());

  bool p2_down = true;
  fetch_.Serve("http://p2/metrics", [&]() -> absl::StatusOr<std::string> {
    if (p2_down) return absl::UnavailableError("connection refused");
    return p2.registry.Render();
  });
  p1.Run("prefill", 100, 4);
  p2.Run("prefill", 100, 1);
  auto s = source->Read(10);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->prefill_busy_fraction, 0.4);  // p1 only
  EXPECT_EQ(source->last_failed_scrapes(), 1);

  // Back: its rate spans both intervals since its last good scrape (2 s busy over 20 s).
  p2_down = false;
  p1.Run("prefill", 100, 4);
  p2.Run("prefill", 100, 1);
  s = source->Read(20);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->prefill_busy_fraction, (0.4 + 0.1) / 2);
  EXPECT_EQ(source->last_failed_scrapes(), 0);

  // Malformed text (a scrape cut short) and an unknown role count as failures too.
  fetch_.Serve("http://p2/metrics", []() -> absl::StatusOr<std::string> {
    return std::string("tandem_worker_busy_seconds_total{role=\"pre");
  });
  targets_.push_back({"http://x/metrics", "embedding"});
  s = source->Read(30);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(source->last_failed_scrapes(), 2);
  EXPECT_EQ(source->failed_scrapes_total(), 3);
}

TEST_F(ScrapeSourceTest, TheReadFailsWithoutTheRouter) {
  FakeWorker p1("prefill");
  AddWorker("http://p1/metrics", &p1);
  auto source = MakeSource();
  fetch_.Serve(kRouterUrl, []() -> absl::StatusOr<std::string> { return absl::DeadlineExceededError("timed out"); });
  auto s = source->Read(0);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr(kRouterUrl));
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("timed out"));

  RemoveTarget(kRouterUrl);
  s = source->Read(10);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ScrapeSourceTest, TheTargetsRoleDecidesWhereAWorkerCounts) {
  // A worker without the role label (or with a stale one) counts as its target says.
  FakeWorker unlabelled("decode", /*with_role_label=*/false);
  AddWorker("http://w/metrics", &unlabelled);
  targets_.back().role = "prefill";
  unlabelled.SetQueued(42);
  auto source = MakeSource();
  auto s = source->Read(0);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->queued_prefill_tokens, 42);

  // A role change in place (drain, flip, no restart) starts a new baseline under the new role.
  unlabelled.Run("decode", 10, 5);
  targets_.back().role = "decode";
  unlabelled.SetKv(1, 3, 0);
  s = source->Read(10);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(std::isnan(s->queued_prefill_tokens));
  EXPECT_DOUBLE_EQ(s->kv_utilization, 0.75);
  EXPECT_TRUE(std::isnan(s->decode_busy_fraction));
  unlabelled.Run("decode", 10, 5);
  s = source->Read(20);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->decode_busy_fraction, 0.5);
}

TEST_F(ScrapeSourceTest, ScrapesManyTargetsInParallel) {
  std::vector<std::unique_ptr<FakeWorker>> workers;
  for (int i = 0; i < 40; ++i) {
    workers.push_back(std::make_unique<FakeWorker>(i % 2 == 0 ? "prefill" : "decode"));
    workers.back()->SetQueued(1);
    AddWorker("http://w" + std::to_string(i) + "/metrics", workers.back().get());
  }
  auto source = MakeSource();
  auto s = source->Read(0);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->queued_prefill_tokens, 20);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(fetch_.calls("http://w" + std::to_string(i) + "/metrics"), 1);
}

}  // namespace
}  // namespace tandem::controller
