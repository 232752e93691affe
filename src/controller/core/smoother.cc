#include "controller/core/smoother.h"

#include <cmath>

#include "controller/core/ewma.h"

namespace tandem::controller {
namespace {

constexpr auto& kFields = kSignalFields;
constexpr size_t kFieldCount = std::size(kFields);

// A field added to Signals must be added to kFields too (the smoother, the decision log and the
// metrics all iterate the table); this fails to compile until it is.
static_assert(sizeof(Signals) == (kFieldCount + 2) * sizeof(double) + sizeof(InstanceCounts),
              "Signals changed: update kSignalFields in controller/signals.h");

}  // namespace

std::span<const SignalField> SignalMeasurementFields() { return kFields; }

SignalSmoother::SignalSmoother(SmootherOptions options) : options_(options) {
  static_assert(kFieldCount <= kMaxFields);
  Restart();
}

void SignalSmoother::Restart() {
  smoothed_ = Signals{};
  last_real_time_.fill(kNoData);
}

const Signals& SignalSmoother::Update(const Signals& reading) {
  if (has_reading_ && reading.time_s < latest_.time_s) Restart();
  has_reading_ = true;
  latest_ = reading;
  smoothed_.time_s = reading.time_s;
  smoothed_.window_s = reading.window_s;
  smoothed_.ready = reading.ready;

  const double now = reading.time_s;
  for (size_t i = 0; i < kFieldCount; ++i) {
    double& out = smoothed_.*kFields[i].member;
    const double v = reading.*kFields[i].member;
    double& last = last_real_time_[i];
    if (!HasData(v)) {
      if (HasData(out) && options_.stale_after_s > 0 && now - last >= options_.stale_after_s) {
        out = kNoData;
      }
      continue;
    }
    if (!HasData(out) || options_.half_life_s <= 0) {
      out = v;
    } else {
      const double dt = now - last;
      if (dt >= kConvergeHalfLives * options_.half_life_s) {
        out = v;
      } else {
        out += EwmaWeight(dt, options_.half_life_s) * (v - out);
      }
    }
    last = now;
  }
  return smoothed_;
}

}  // namespace tandem::controller
