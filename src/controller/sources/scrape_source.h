// ScrapeSource: Signals from scraping the router's and every worker's /metrics directly, without
// Prometheus. Each Read() scrapes the current targets in parallel, keeps each target's scrape
// (by URL) for the next read, and computes every rate as the counter increase since that
// target's previous scrape divided by the time between the two, summed over targets (PromQL's
// `sum(rate(...))` with the window = the time between reads). Quantiles come from the bucket
// increases, interpolated inside the bucket as histogram_quantile does. The definitions are the
// ones PromQLSource::Queries() lists; a worker's role is the one its ScrapeTarget gives.
//
// - First read (and the first read of a new target): gauges are filled, the target's rates are
//   not (NaN when no target has a rate).
// - A counter that went down (the process restarted) restarts that target's baseline: the read
//   uses none of its rates, the next one does again.
// - A target that fails (connection, HTTP status, malformed text, unknown role) is skipped,
//   logged and counted; the read fails only when no router target answered.
// - A target no longer listed is forgotten; one listed again later starts a new baseline.
// - The prompt and output length quantiles pool a longer span than one reading: the router's
//   length histograms since its scrape length_window_s ago (or its oldest kept one), as
//   PromQLSource's quantiles over its --window do. One reading's interval holds too few requests
//   at low rates for a distribution.
//
// Thread-safety: Read() and the accessors from one thread at a time (the control loop). Fetches
// run on short-lived threads inside Read(), so `fetch` must be thread-safe (HttpGetBody is).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/sources/prom_text.h"
#include "controller/core/signal_source.h"

namespace tandem::controller {

struct ScrapeTarget {
  std::string url;   // the full /metrics URL, e.g. "http://10.0.0.7:8000/metrics"
  std::string role;  // "router", "prefill", "decode" or "mixed"
};

// Returns the targets of this read; called once per Read() (workers come and go).
using ScrapeTargetsFn = std::function<std::vector<ScrapeTarget>()>;
// GETs a URL and returns the body of a 2xx response.
using ScrapeFetchFn =
    std::function<absl::StatusOr<std::string>(const std::string& url, std::chrono::milliseconds timeout)>;

struct ScrapeSourceOptions {
  ScrapeFetchFn fetch;  // empty: HttpGetBody
  std::chrono::milliseconds timeout{2000};  // per target
  int max_parallel = 16;                     // concurrent fetches
  double length_window_s = 60;               // span of the length quantiles
};

class ScrapeSource final : public SignalSource {
 public:
  // `now_s` passed to Read() is any monotonic clock in seconds. `targets` must not be empty.
  explicit ScrapeSource(ScrapeTargetsFn targets, ScrapeSourceOptions options = {});
  ~ScrapeSource() override;

  std::string name() const override { return "scrape"; }
  absl::StatusOr<Signals> Read(double now_s) override;

  // Targets skipped because they failed, over the source's life and in the last Read().
  int64_t failed_scrapes_total() const { return failed_scrapes_total_; }
  int last_failed_scrapes() const { return last_failed_scrapes_; }
  // Baselines restarted because a counter went down, over the source's life.
  int64_t counter_resets_total() const { return counter_resets_total_; }

  // One target's scrape, kept for the next read (an implementation detail, public only so that
  // the .cc file's free helpers can name it).
  struct Scrape {
    std::string role;
    double time_s = 0;
    PromExposition exposition;
    std::map<std::string, double, std::less<>> by_series;  // series key → value
  };

 private:
  // The router's length histogram rates over length_window_s: keeps `current`'s length series
  // in the URL's history (cleared first when `restart`) and returns their rates since the
  // baseline (none on the first scrape).
  std::vector<PromSample> LengthRates(const std::string& url, const Scrape& current, bool restart);

  ScrapeTargetsFn targets_;
  ScrapeSourceOptions options_;
  std::map<std::string, Scrape, std::less<>> previous_;  // by target URL
  std::map<std::string, std::deque<Scrape>, std::less<>> length_history_;  // router URL → length scrapes
  int64_t failed_scrapes_total_ = 0;
  int last_failed_scrapes_ = 0;
  int64_t counter_resets_total_ = 0;
};

}  // namespace tandem::controller
