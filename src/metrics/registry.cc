#include "metrics/registry.h"

#include <cmath>
#include <set>
#include <typeinfo>
#include <utility>

#include "common/check.h"
#include "metrics/text_format.h"

namespace tandem::metrics {
namespace {

void CheckLabelNames(std::string_view metric, const std::vector<std::string>& label_names,
                     bool histogram) {
  std::set<std::string_view> seen;
  for (const std::string& label : label_names) {
    const absl::Status status = ValidateLabelName(label);
    TANDEM_CHECK(status.ok()) << "metric " << metric << ": " << status.ToString();
    TANDEM_CHECK(seen.insert(label).second) << "metric " << metric << ": duplicate label " << label;
    TANDEM_CHECK(!(histogram && label == "le"))
        << "metric " << metric << ": 'le' is reserved for histogram buckets";
  }
}

std::vector<double> CheckedBounds(std::string_view metric, std::vector<double> bounds) {
  if (!bounds.empty() && std::isinf(bounds.back()) && bounds.back() > 0) bounds.pop_back();
  for (size_t i = 0; i < bounds.size(); ++i) {
    TANDEM_CHECK(std::isfinite(bounds[i]))
        << "metric " << metric << ": bucket bound " << bounds[i] << " is not finite";
    TANDEM_CHECK(i == 0 || bounds[i - 1] < bounds[i])
        << "metric " << metric << ": bucket bounds must be strictly increasing";
  }
  return bounds;
}

std::vector<std::string> SampleNames(const Family& family) {
  if (family.type() != Family::Type::kHistogram) return {family.name()};
  return {family.name() + "_bucket", family.name() + "_sum", family.name() + "_count"};
}

}  // namespace

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

Family& MetricsRegistry::Insert(std::unique_ptr<Family> family,
                                const std::vector<double>* upper_bounds) {
  const std::string& name = family->name();
  const absl::Status status = ValidateMetricName(name);
  TANDEM_CHECK(status.ok()) << status.ToString();
  if (family->type() == Family::Type::kCounter) {
    TANDEM_CHECK(name.ends_with("_total")) << "counter " << name << " must end in _total";
  }
  CheckLabelNames(name, family->label_names(), family->type() == Family::Type::kHistogram);

  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& l : family->label_names()) {
    for (const std::string& c : const_label_names_) {
      TANDEM_CHECK(l != c) << "metric " << name << ": label " << l << " is a constant label of the registry";
    }
  }
  if (auto it = families_.find(name); it != families_.end()) {
    Family& existing = *it->second;
    bool same = typeid(existing) == typeid(*family) && existing.help() == family->help() &&
                existing.label_names() == family->label_names();
    if (same && upper_bounds != nullptr) {
      same = static_cast<HistogramFamily&>(existing).upper_bounds() == *upper_bounds;
    }
    TANDEM_CHECK(same) << "metric " << name
                       << " registered twice with a different type, help, labels or buckets";
    return existing;
  }
  const std::vector<std::string> samples = SampleNames(*family);
  for (const std::string& sample : samples) {
    TANDEM_CHECK(!sample_names_.contains(sample) && !families_.contains(sample))
        << "metric " << name << " would emit series " << sample
        << ", which another family already emits";
  }
  sample_names_.insert(samples.begin(), samples.end());
  Family& stored = *family;
  families_.emplace(name, std::move(family));
  return stored;
}

CounterFamily& MetricsRegistry::AddCounter(std::string_view name, std::string_view help,
                                           std::vector<std::string> label_names) {
  return static_cast<CounterFamily&>(Insert(
      std::make_unique<CounterFamily>(std::string(name), std::string(help), std::move(label_names)),
      nullptr));
}

GaugeFamily& MetricsRegistry::AddGauge(std::string_view name, std::string_view help,
                                       std::vector<std::string> label_names) {
  return static_cast<GaugeFamily&>(Insert(
      std::make_unique<GaugeFamily>(std::string(name), std::string(help), std::move(label_names)),
      nullptr));
}

HistogramFamily& MetricsRegistry::AddHistogram(std::string_view name, std::string_view help,
                                               std::vector<double> upper_bounds,
                                               std::vector<std::string> label_names) {
  std::vector<double> bounds = CheckedBounds(name, std::move(upper_bounds));
  auto family = std::make_unique<HistogramFamily>(std::string(name), std::string(help),
                                                  std::move(label_names), bounds);
  return static_cast<HistogramFamily&>(Insert(std::move(family), &bounds));
}

CallbackFamily& MetricsRegistry::AddCallbackGauge(std::string_view name, std::string_view help,
                                                  std::vector<std::string> label_names) {
  return static_cast<CallbackFamily&>(
      Insert(std::make_unique<CallbackFamily>(std::string(name), std::string(help),
                                              Family::Type::kGauge, std::move(label_names)),
             nullptr));
}

CallbackFamily& MetricsRegistry::AddCallbackCounter(std::string_view name, std::string_view help,
                                                    std::vector<std::string> label_names) {
  return static_cast<CallbackFamily&>(
      Insert(std::make_unique<CallbackFamily>(std::string(name), std::string(help),
                                              Family::Type::kCounter, std::move(label_names)),
             nullptr));
}

std::string MetricsRegistry::Render() const {
  // Families are never removed, so the pointers stay valid after the lock is released; rendering
  // outside it lets callbacks run without blocking registration.
  std::vector<const Family*> families;
  {
    std::lock_guard<std::mutex> lock(mu_);
    families.reserve(families_.size());
    for (const auto& [name, family] : families_) families.push_back(family.get());
  }
  std::string out;
  for (const Family* family : families) family->Render(&out);
  std::string prefix;
  {
    std::lock_guard<std::mutex> lock(mu_);
    prefix = const_labels_;
  }
  if (prefix.empty()) return out;
  // Every sample line gets the constant labels first: `name{c="v",l="x"} 1` or `name{c="v"} 1`.
  std::string labelled;
  labelled.reserve(out.size() + out.size() / 4);
  size_t pos = 0;
  while (pos < out.size()) {
    size_t end = out.find('\n', pos);
    if (end == std::string::npos) end = out.size();
    const std::string_view line(out.data() + pos, end - pos);
    if (!line.empty() && line[0] != '#') {
      const size_t space = line.find(' ');
      const size_t brace = line.find('{');
      if (brace != std::string_view::npos && brace < space) {
        labelled.append(line.substr(0, brace + 1)).append(prefix);
        if (line[brace + 1] != '}') labelled.push_back(',');
        labelled.append(line.substr(brace + 1));
      } else {
        labelled.append(line.substr(0, space)).append("{").append(prefix).append("}").append(line.substr(space));
      }
    } else {
      labelled.append(line);
    }
    labelled.push_back('\n');
    pos = end + 1;
  }
  return labelled;
}

void MetricsRegistry::SetConstLabels(const std::vector<std::pair<std::string, std::string>>& labels) {
  std::string rendered;
  for (const auto& [name, value] : labels) {
    TANDEM_CHECK(ValidateLabelName(name).ok()) << "invalid constant label name " << name;
    if (!rendered.empty()) rendered.push_back(',');
    rendered.append(name).append("=\"");
    AppendEscapedLabelValue(value, &rendered);
    rendered.push_back('"');
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [family_name, family] : families_) {
    for (const auto& [name, value] : labels) {
      for (const std::string& l : family->label_names()) {
        TANDEM_CHECK(l != name) << "constant label " << name << " is also a label of " << family_name;
      }
    }
  }
  const_label_names_.clear();
  for (const auto& [name, value] : labels) const_label_names_.push_back(name);
  const_labels_ = std::move(rendered);
}

}  // namespace tandem::metrics
