// SignalSource: where the controller's Signals (signals.h) come from. Two implementations:
// ScrapeSource (scrape_source.h) reads every process's /metrics directly; PromQLSource
// (promql_source.h) asks a Prometheus server. Both compute the same definitions, listed with
// PromQLSource::Queries().
//
// Thread-safety: a source is driven by one control loop; Read() is called from one thread at a
// time (implementations may keep state between reads, e.g. the previous scrape).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "controller/core/signals.h"

namespace tandem::controller {

class SignalSource {
 public:
  virtual ~SignalSource() = default;

  // A short name for logs and metrics ("scrape", "promql").
  virtual std::string name() const = 0;

  // One reading at `now_s` (seconds on the caller's clock; see each source for which clock).
  // An error when the reading is unusable as a whole (the router did not answer, Prometheus
  // failed); a value merely without data in its window is NaN in the Signals instead.
  virtual absl::StatusOr<Signals> Read(double now_s) = 0;
};

}  // namespace tandem::controller
