#include "metrics/buckets.h"

#include "common/check.h"

namespace tandem::metrics {

std::vector<double> DefaultLatencyBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

std::vector<double> TokenLatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03,
          0.05,  0.075,  0.1,   0.15,   0.25, 0.5,   1};
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  TANDEM_CHECK(start > 0 && factor > 1 && count >= 1)
      << "ExponentialBuckets(" << start << ", " << factor << ", " << count << ")";
  std::vector<double> bounds;
  bounds.reserve(count);
  double bound = start;
  for (int i = 0; i < count; ++i, bound *= factor) bounds.push_back(bound);
  return bounds;
}

std::vector<double> LinearBuckets(double start, double width, int count) {
  TANDEM_CHECK(width > 0 && count >= 1)
      << "LinearBuckets(" << start << ", " << width << ", " << count << ")";
  std::vector<double> bounds;
  bounds.reserve(count);
  for (int i = 0; i < count; ++i) bounds.push_back(start + width * i);
  return bounds;
}

HistogramFamily& AddLatencyHistogram(MetricsRegistry& registry, std::string_view name,
                                     std::string_view help, std::vector<std::string> label_names) {
  TANDEM_CHECK(name.ends_with("_seconds"))
      << "latency histogram " << name << " must be in seconds (end in _seconds)";
  return registry.AddHistogram(name, help, DefaultLatencyBuckets(), std::move(label_names));
}

double ScopedLatencyTimer::Stop() {
  if (histogram_ == nullptr) return 0;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  histogram_->Observe(seconds);
  histogram_ = nullptr;
  return seconds;
}

}  // namespace tandem::metrics
