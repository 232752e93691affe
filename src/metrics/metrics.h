// Metric values (Counter, Gauge, Histogram) and the labelled families that own them. Families
// are created by MetricsRegistry (registry.h), which owns them; see there for naming rules.
//
// Thread-safety: everything here is thread-safe. Updating a Counter, Gauge or Histogram is
// lock-free (relaxed atomics); `With()` takes the family's lock, so hot paths look a child up
// once and keep the reference, which stays valid for the registry's lifetime.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"

namespace tandem::metrics {

// One value per label name of the family, in the family's label order.
using LabelValues = std::vector<std::string>;

// A value that only goes up (requests served, tokens generated).
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds `delta`, which must be >= 0: a negative or NaN delta is a bug (DCHECK; ignored in
  // release builds so a counter never goes down).
  void Increment(double delta = 1.0);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down (queue depth, bytes in use).
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  void Increment(double delta = 1.0) { Add(delta); }
  void Decrement(double delta = 1.0) { Add(-delta); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Counts observations into buckets with fixed upper bounds (Prometheus `le`, inclusive), plus
// their sum. The bounds are owned by the family and outlive the histogram.
class Histogram {
 public:
  // `upper_bounds` strictly increasing and finite; an implicit +Inf bucket follows them.
  explicit Histogram(std::span<const double> upper_bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Records `value` in the first bucket whose bound is >= value. NaN is ignored.
  void Observe(double value);

  struct Snapshot {
    // Cumulative counts, one per upper bound followed by the +Inf bucket (== count).
    std::vector<uint64_t> cumulative_counts;
    double sum = 0;
    uint64_t count = 0;
  };
  // Consistent between buckets and count; `sum` may miss an observation racing with the call.
  Snapshot Snap() const;

  std::span<const double> upper_bounds() const { return upper_bounds_; }

 private:
  const std::span<const double> upper_bounds_;
  // Per-bucket (not cumulative) counts; the last one is the +Inf bucket.
  const std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0.0};
};

// A metric family: one name, help text, type and fixed label names; one child per distinct
// combination of label values. Rendering is in the text exposition format 0.0.4.
class Family {
 public:
  enum class Type { kCounter, kGauge, kHistogram };

  Family(std::string name, std::string help, Type type, std::vector<std::string> label_names);
  virtual ~Family() = default;
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  Type type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Appends "# HELP", "# TYPE" and one line per sample, children in label-value order. Appends
  // nothing while the family has no children.
  void Render(std::string* out) const;

 protected:
  // `name{l1="v1",l2="v2"` without the closing brace (or just `name`) is built by the caller;
  // this returns the escaped `l1="v1",l2="v2"` part. CHECK-fails on a wrong value count.
  std::string RenderLabels(const LabelValues& values) const;
  // Appends the sample lines of every child.
  virtual void RenderSamples(std::string* out) const = 0;

 private:
  const std::string name_;
  const std::string help_;
  const Type type_;
  const std::vector<std::string> label_names_;
};

// The family of a Counter, Gauge or Histogram with stored values.
template <typename Metric>
class MetricFamily : public Family {
 public:
  using Family::Family;

  // Returns the child for `label_values` (one per label name, in order; a wrong count is a bug
  // and CHECK-fails), creating it at zero on first use. Unlabelled families: With().
  Metric& With(const LabelValues& label_values = {});

 protected:
  virtual std::unique_ptr<Metric> NewMetric() const = 0;
  void RenderSamples(std::string* out) const override;

 private:
  struct Child {
    std::string labels;  // escaped `l1="v1",...`, rendered once
    std::unique_ptr<Metric> metric;
  };
  mutable std::mutex mu_;
  std::map<LabelValues, Child> children_ ABSL_GUARDED_BY(mu_);
};

class CounterFamily final : public MetricFamily<Counter> {
 public:
  CounterFamily(std::string name, std::string help, std::vector<std::string> label_names);

 protected:
  std::unique_ptr<Counter> NewMetric() const override { return std::make_unique<Counter>(); }
};

class GaugeFamily final : public MetricFamily<Gauge> {
 public:
  GaugeFamily(std::string name, std::string help, std::vector<std::string> label_names);

 protected:
  std::unique_ptr<Gauge> NewMetric() const override { return std::make_unique<Gauge>(); }
};

class HistogramFamily final : public MetricFamily<Histogram> {
 public:
  HistogramFamily(std::string name, std::string help, std::vector<std::string> label_names,
                  std::vector<double> upper_bounds);
  const std::vector<double>& upper_bounds() const { return upper_bounds_; }

 protected:
  std::unique_ptr<Histogram> NewMetric() const override {
    return std::make_unique<Histogram>(upper_bounds_);
  }

 private:
  const std::vector<double> upper_bounds_;
};

class CallbackFamily;

// Keeps one callback of a CallbackFamily registered; destroying it (or Reset()) unregisters
// it, and once that returns the callback is never called again, so the callback may capture
// objects that die right after the handle. Movable; may outlive the registry.
class [[nodiscard]] CallbackRegistration {
 public:
  CallbackRegistration() = default;
  ~CallbackRegistration() { Reset(); }
  CallbackRegistration(CallbackRegistration&& other) noexcept = default;
  CallbackRegistration& operator=(CallbackRegistration&& other) noexcept;

  void Reset();

 private:
  friend class CallbackFamily;
  struct Entry;
  struct Set;
  CallbackRegistration(std::weak_ptr<Set> set, std::shared_ptr<Entry> entry)
      : set_(std::move(set)), entry_(std::move(entry)) {}

  std::weak_ptr<Set> set_;
  std::shared_ptr<Entry> entry_;
};

// A counter or gauge family whose values are read from callbacks at scrape time (free KV
// blocks read from the engine, say). Callbacks run on the thread calling Render(), one at a
// time per callback, outside the registry's and the family's locks; they must be cheap and must
// not render this registry. If two live registrations share label values, the newer one is
// rendered.
class CallbackFamily final : public Family {
 public:
  CallbackFamily(std::string name, std::string help, Type type,
                 std::vector<std::string> label_names);

  CallbackRegistration Register(const LabelValues& label_values, std::function<double()> fn);

 protected:
  void RenderSamples(std::string* out) const override;

 private:
  const std::shared_ptr<CallbackRegistration::Set> set_;
};

}  // namespace tandem::metrics
