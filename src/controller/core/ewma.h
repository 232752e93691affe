// The weight an exponentially weighted moving average gives a new value that arrives `dt_s`
// after the previous one, for a half-life of `half_life_s`: 1 - 2^(-dt / half-life). The smoother
// (irregular scrape intervals) and the forecaster's error tracking share it.
#pragma once

#include <cmath>
#include <numbers>

namespace tandem::controller {

inline double EwmaWeight(double dt_s, double half_life_s) {
  return 1 - std::exp(-dt_s * std::numbers::ln2 / half_life_s);
}

}  // namespace tandem::controller
