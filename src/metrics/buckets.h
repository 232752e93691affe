// Histogram bucket layouts and a timer for latency histograms. Everything is in seconds, the
// Prometheus base unit. Thread-safe (pure functions; a ScopedLatencyTimer belongs to one thread).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/metrics.h"
#include "metrics/registry.h"

namespace tandem::metrics {

// Request-level latencies (TTFT, queue time, prefill time, end-to-end):
// 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60.
std::vector<double> DefaultLatencyBuckets();

// Token-level latencies (inter-token latency, one decode step): 0.001 .. 1.
std::vector<double> TokenLatencyBuckets();

// start, start*factor, ... (`count` bounds). start > 0, factor > 1, count >= 1; CHECK-fails
// otherwise. E.g. ExponentialBuckets(4096, 4, 10) for transfer sizes in bytes.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

// start, start+width, ... (`count` bounds). width > 0, count >= 1.
std::vector<double> LinearBuckets(double start, double width, int count);

// AddHistogram with DefaultLatencyBuckets(); `name` must end in "_seconds" (CHECK).
HistogramFamily& AddLatencyHistogram(MetricsRegistry& registry, std::string_view name,
                                     std::string_view help,
                                     std::vector<std::string> label_names = {});

// Observes the seconds elapsed between construction and destruction (or Stop()) into a
// histogram, once. Uses the monotonic clock.
class ScopedLatencyTimer {
 public:
  explicit ScopedLatencyTimer(Histogram& histogram)
      : histogram_(&histogram), start_(std::chrono::steady_clock::now()) {}
  ~ScopedLatencyTimer() { Stop(); }
  ScopedLatencyTimer(const ScopedLatencyTimer&) = delete;
  ScopedLatencyTimer& operator=(const ScopedLatencyTimer&) = delete;

  // Records now and returns the seconds observed; later calls (and the destructor) do nothing
  // and return 0.
  double Stop();

 private:
  Histogram* histogram_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace tandem::metrics
