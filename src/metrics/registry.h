// MetricsRegistry: the set of metric families a process exposes on /metrics, rendered in the
// Prometheus text exposition format 0.0.4 (text_format.h has the content type).
//
// Naming follows the Prometheus naming guide (and CONVENTIONS.md):
// `tandem_<component>_<what>_<unit>`, base units, counters end in `_total`.
//
// Registration errors CHECK-fail: metric and label names are constants in the code, so an
// invalid name, a counter without `_total`, a duplicate or reserved label name (`le` on a
// histogram), bad bucket bounds, or a name registered twice with a different type, help, labels
// or buckets is a bug, caught by the first test that builds the component. Registering the same
// family twice identically returns the existing family, so components may register
// independently. Label *values* are data: any string is accepted and escaped.
//
// Thread-safety: all methods are thread-safe. Families are owned by the registry and live as
// long as it does; the references returned stay valid until then.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "metrics/metrics.h"

namespace tandem::metrics {

class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // `name` must end in "_total".
  CounterFamily& AddCounter(std::string_view name, std::string_view help,
                            std::vector<std::string> label_names = {});
  GaugeFamily& AddGauge(std::string_view name, std::string_view help,
                        std::vector<std::string> label_names = {});
  // `upper_bounds`: finite, strictly increasing; a trailing +Inf is dropped (it is implicit).
  // buckets.h has defaults for latencies in seconds.
  HistogramFamily& AddHistogram(std::string_view name, std::string_view help,
                                std::vector<double> upper_bounds,
                                std::vector<std::string> label_names = {});

  // Families whose values come from callbacks evaluated at each Render().
  CallbackFamily& AddCallbackGauge(std::string_view name, std::string_view help,
                                   std::vector<std::string> label_names = {});
  // `name` must end in "_total"; the callback must return a value that never decreases.
  CallbackFamily& AddCallbackCounter(std::string_view name, std::string_view help,
                                     std::vector<std::string> label_names = {});

  // The exposition text: families sorted by name, children by label values; a family without
  // children is left out. Stable: the same state renders the same bytes.
  std::string Render() const;

  // Labels added to every sample of every family (a worker's `role`), e.g. {{"role", "prefill"}}.
  // May be called again to change the values (a worker whose role changed). A name that is also
  // a label of some family is a bug (CHECK), as is an invalid label name.
  void SetConstLabels(const std::vector<std::pair<std::string, std::string>>& labels);

 private:
  // Validates and either returns the existing identical family or stores `family`.
  Family& Insert(std::unique_ptr<Family> family, const std::vector<double>* upper_bounds);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>, std::less<>> families_ ABSL_GUARDED_BY(mu_);
  // Every sample name the families produce (a histogram `h` makes h_bucket, h_sum, h_count),
  // so that no two families can emit the same series name.
  std::set<std::string, std::less<>> sample_names_ ABSL_GUARDED_BY(mu_);
  // Rendered `name="value",...` of the constant labels (empty: none), and their names.
  std::string const_labels_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> const_label_names_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem::metrics
