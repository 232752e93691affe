#include "metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "common/check.h"
#include "metrics/text_format.h"

namespace tandem::metrics {

// ---------------------------------------------------------------------------------------------
// Values.

void Counter::Increment(double delta) {
  TANDEM_DCHECK(delta >= 0) << "counter increment must be >= 0, got " << delta;
  if (!(delta >= 0)) return;
  value_.fetch_add(delta, std::memory_order_relaxed);
}

Histogram::Histogram(std::span<const double> upper_bounds)
    : upper_bounds_(upper_bounds),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(upper_bounds.size() + 1)) {}

void Histogram::Observe(double value) {
  if (std::isnan(value)) return;
  // Buckets are inclusive upper bounds: the first bound >= value.
  const size_t bucket =
      std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Snap() const {
  Snapshot snap;
  snap.cumulative_counts.resize(upper_bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    snap.cumulative_counts[i] = running;
  }
  snap.count = running;
  snap.sum = sum_.load(std::memory_order_relaxed);
  return snap;
}

// ---------------------------------------------------------------------------------------------
// Rendering helpers.

namespace {

std::string_view TypeName(Family::Type type) {
  switch (type) {
    case Family::Type::kCounter:
      return "counter";
    case Family::Type::kGauge:
      return "gauge";
    case Family::Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// Appends `name{labels} value\n` (no braces when `labels` is empty).
void AppendSample(std::string_view name, std::string_view labels, double value, std::string* out) {
  out->append(name);
  if (!labels.empty()) {
    out->push_back('{');
    out->append(labels);
    out->push_back('}');
  }
  out->push_back(' ');
  AppendValue(value, out);
  out->push_back('\n');
}

void AppendSamplesOf(const std::string& name, const std::string& labels, const Counter& c,
                     std::string* out) {
  AppendSample(name, labels, c.value(), out);
}

void AppendSamplesOf(const std::string& name, const std::string& labels, const Gauge& g,
                     std::string* out) {
  AppendSample(name, labels, g.value(), out);
}

void AppendSamplesOf(const std::string& name, const std::string& labels, const Histogram& h,
                     std::string* out) {
  const Histogram::Snapshot snap = h.Snap();
  const std::string bucket_name = name + "_bucket";
  const std::string prefix = labels.empty() ? std::string() : labels + ",";
  const std::span<const double> bounds = h.upper_bounds();
  for (size_t i = 0; i <= bounds.size(); ++i) {
    std::string bucket_labels = prefix + "le=\"";
    AppendValue(i < bounds.size() ? bounds[i] : INFINITY, &bucket_labels);
    bucket_labels.push_back('"');
    AppendSample(bucket_name, bucket_labels, static_cast<double>(snap.cumulative_counts[i]), out);
  }
  AppendSample(name + "_sum", labels, snap.sum, out);
  AppendSample(name + "_count", labels, static_cast<double>(snap.count), out);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Families.

Family::Family(std::string name, std::string help, Type type, std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {}

void Family::Render(std::string* out) const {
  std::string samples;
  RenderSamples(&samples);
  if (samples.empty()) return;
  if (!help_.empty()) {
    out->append("# HELP ").append(name_).push_back(' ');
    AppendEscapedHelp(help_, out);
    out->push_back('\n');
  }
  out->append("# TYPE ").append(name_).push_back(' ');
  out->append(TypeName(type_)).push_back('\n');
  out->append(samples);
}

std::string Family::RenderLabels(const LabelValues& values) const {
  TANDEM_CHECK_EQ(values.size(), label_names_.size())
      << "metric " << name_ << " takes " << label_names_.size() << " label values";
  std::string labels;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) labels.push_back(',');
    labels.append(label_names_[i]).append("=\"");
    AppendEscapedLabelValue(values[i], &labels);
    labels.push_back('"');
  }
  return labels;
}

template <typename Metric>
Metric& MetricFamily<Metric>::With(const LabelValues& label_values) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = children_.find(label_values);
  if (it == children_.end()) {
    Child child{RenderLabels(label_values), NewMetric()};
    it = children_.emplace(label_values, std::move(child)).first;
  }
  return *it->second.metric;
}

template <typename Metric>
void MetricFamily<Metric>::RenderSamples(std::string* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, child] : children_) {
    AppendSamplesOf(name(), child.labels, *child.metric, out);
  }
}

template class MetricFamily<Counter>;
template class MetricFamily<Gauge>;
template class MetricFamily<Histogram>;

CounterFamily::CounterFamily(std::string name, std::string help,
                             std::vector<std::string> label_names)
    : MetricFamily(std::move(name), std::move(help), Type::kCounter, std::move(label_names)) {}

GaugeFamily::GaugeFamily(std::string name, std::string help, std::vector<std::string> label_names)
    : MetricFamily(std::move(name), std::move(help), Type::kGauge, std::move(label_names)) {}

HistogramFamily::HistogramFamily(std::string name, std::string help,
                                 std::vector<std::string> label_names,
                                 std::vector<double> upper_bounds)
    : MetricFamily(std::move(name), std::move(help), Type::kHistogram, std::move(label_names)),
      upper_bounds_(std::move(upper_bounds)) {}

// ---------------------------------------------------------------------------------------------
// Callbacks.

struct CallbackRegistration::Entry {
  std::string labels;  // escaped, rendered once
  // Held while the callback runs, so that unregistering waits for a running call.
  std::mutex mu;
  std::function<double()> fn ABSL_GUARDED_BY(mu);  // empty once unregistered
};

struct CallbackRegistration::Set {
  std::mutex mu;
  // Live registrations per label values, oldest first.
  std::map<LabelValues, std::vector<std::shared_ptr<Entry>>> entries ABSL_GUARDED_BY(mu);
};

CallbackRegistration& CallbackRegistration::operator=(CallbackRegistration&& other) noexcept {
  if (this != &other) {
    Reset();
    set_ = std::move(other.set_);
    entry_ = std::move(other.entry_);
  }
  return *this;
}

void CallbackRegistration::Reset() {
  if (entry_ == nullptr) return;
  if (std::shared_ptr<Set> set = set_.lock()) {
    std::lock_guard<std::mutex> lock(set->mu);
    for (auto it = set->entries.begin(); it != set->entries.end(); ++it) {
      auto& list = it->second;
      auto pos = std::find(list.begin(), list.end(), entry_);
      if (pos == list.end()) continue;
      list.erase(pos);
      if (list.empty()) set->entries.erase(it);
      break;
    }
  }
  {
    // Waits for a call in progress; afterwards Render() sees an empty function.
    std::lock_guard<std::mutex> lock(entry_->mu);
    entry_->fn = nullptr;
  }
  entry_.reset();
  set_.reset();
}

CallbackFamily::CallbackFamily(std::string name, std::string help, Type type,
                               std::vector<std::string> label_names)
    : Family(std::move(name), std::move(help), type, std::move(label_names)),
      set_(std::make_shared<CallbackRegistration::Set>()) {
  TANDEM_CHECK(type != Type::kHistogram) << "callback histograms are not supported";
}

CallbackRegistration CallbackFamily::Register(const LabelValues& label_values,
                                              std::function<double()> fn) {
  TANDEM_CHECK(fn != nullptr) << "metric " << name();
  auto entry = std::make_shared<CallbackRegistration::Entry>();
  entry->labels = RenderLabels(label_values);
  entry->fn = std::move(fn);
  {
    std::lock_guard<std::mutex> lock(set_->mu);
    set_->entries[label_values].push_back(entry);
  }
  return CallbackRegistration(set_, std::move(entry));
}

void CallbackFamily::RenderSamples(std::string* out) const {
  std::vector<std::shared_ptr<CallbackRegistration::Entry>> newest;
  {
    std::lock_guard<std::mutex> lock(set_->mu);
    newest.reserve(set_->entries.size());
    for (const auto& [values, list] : set_->entries) newest.push_back(list.back());
  }
  for (const auto& entry : newest) {
    std::lock_guard<std::mutex> lock(entry->mu);
    if (entry->fn == nullptr) continue;  // unregistered since the copy above
    AppendSample(name(), entry->labels, entry->fn(), out);
  }
}

}  // namespace tandem::metrics
