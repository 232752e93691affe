// SignalSmoother: exponentially weighted moving average (EWMA) of the controller's Signals, so
// that one noisy scrape window does not move the prefill:decode ratio.
//
// Rule, per double measurement field (every field of Signals except time_s, window_s, ready):
//   - the first real (non-NaN) value initialises the field;
//   - a later real value v at time t moves it by alpha = 1 - exp(-dt·ln2 / half_life_s), where
//     dt = t - the time of that field's previous real value (so a field that had no data for a
//     while trusts the new value more: its old value is staler);
//   - dt >= kConvergeHalfLives half-lives takes v as it is (the old value weighs < 0.4%);
//   - a NaN leaves the field as it was; a field with no real value for stale_after_s becomes
//     NaN again (a TTFT measured before the traffic stopped must not keep asking for prefill
//     instances while nothing arrives).
//   - A reading older than the previous one (a source restarted its clock) restarts smoothing.
// time_s, window_s and ready are copied from the latest reading. half_life_s <= 0 disables
// smoothing (every real value is taken as it is).
//
// Not thread-safe: the control loop owns one and feeds it from one thread.
#pragma once

#include <array>
#include <cstddef>
#include <span>

#include "controller/core/signals.h"

namespace tandem::controller {

// One measurement field of Signals, by its name in the decision log and metrics.

// Every double measurement field of Signals, in declaration order (time_s and window_s, which
// are not measurements, are not listed). Other code (the decision log, metrics) iterates this.
std::span<const SignalField> SignalMeasurementFields();

struct SmootherOptions {
  double half_life_s = 20;     // a step change is half taken in after this long
  double stale_after_s = 120;  // a field with no real value for this long turns NaN; <= 0: never
};

class SignalSmoother {
 public:
  static constexpr double kConvergeHalfLives = 8;

  explicit SignalSmoother(SmootherOptions options = {});

  // Folds in one reading and returns the smoothed Signals (valid until the next Update).
  const Signals& Update(const Signals& reading);

  const Signals& smoothed() const { return smoothed_; }
  const Signals& latest() const { return latest_; }  // the last raw reading
  bool has_reading() const { return has_reading_; }
  const SmootherOptions& options() const { return options_; }

 private:
  static constexpr size_t kMaxFields = 32;

  void Restart();

  SmootherOptions options_;
  Signals smoothed_;
  Signals latest_;
  bool has_reading_ = false;
  // When each field (indexed like SignalMeasurementFields()) last got a real value.
  std::array<double, kMaxFields> last_real_time_{};
};

}  // namespace tandem::controller
