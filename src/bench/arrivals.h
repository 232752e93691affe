// When requests arrive: the open-loop arrival processes of `tandem bench serve`.
//
//  * Gamma arrivals (vLLM's `--request-rate` / `--burstiness`): interarrival times drawn from
//    Gamma(shape = b, scale = 1 / (rate * b)), so the mean gap is 1 / rate and the squared
//    coefficient of variation is 1 / b. b = 1 is a Poisson process; b < 1 is burstier, b > 1
//    smoother. The first request arrives at t = 0. An infinite rate sends everything at t = 0.
//  * A rate schedule: phases of (duration, rate, workload), each an open-loop gamma process
//    over its own time window, for the controller experiments (traffic that shifts).
//
// Everything here is a pure function of its arguments and the seeded generator it is given;
// nothing reads a clock. Times are seconds from the start of the run.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::bench {

using Rng = std::mt19937_64;

struct ArrivalProcess {
  double rate = 1.0;        // requests per second; +inf: all at once
  double burstiness = 1.0;  // gamma shape b > 0; 1 = Poisson
};

// InvalidArgument for rate <= 0 or NaN, or burstiness <= 0 or not finite.
absl::Status ValidateArrivalProcess(const ArrivalProcess& process);

// `n` arrival times starting at 0, non-decreasing. `process` must be valid.
std::vector<double> GammaArrivals(const ArrivalProcess& process, int n, Rng& rng);

// One phase of a schedule: `duration_s` seconds of arrivals at `rate` (0: an idle gap) drawn
// from `workload` (a workload spec, see workload.h; empty: the run's --workload).
struct SchedulePhase {
  double duration_s = 0;
  double rate = 0;
  std::string workload;
};

// Parses a schedule. Phases are "<duration>s@<rate>[:<workload spec>]", e.g.
// "60s@2:chat" or "30s@0" (the trailing 's' is optional); inline they are separated by ';',
// in a file one per line ('#' starts a comment, blank lines are skipped). Errors name the
// phase (1-based) or line. The rate must be finite.
absl::StatusOr<std::vector<SchedulePhase>> ParseSchedule(std::string_view text);

// Arrivals of one phase-structured run: each phase draws gamma arrivals (with the run's
// burstiness) in [phase start, phase end), the first one a gamma gap after the phase start,
// so that a phase gets rate * duration arrivals on average (exactly so for Poisson).
struct ScheduledArrival {
  double time_s = 0;
  int phase = 0;  // index into the schedule
};
std::vector<ScheduledArrival> ScheduleArrivals(const std::vector<SchedulePhase>& phases,
                                               double burstiness, Rng& rng);

// Total duration of the schedule in seconds.
double ScheduleDuration(const std::vector<SchedulePhase>& phases);

// "inf" for an infinite rate, else the number with up to 4 significant digits.
std::string FormatRate(double rate);

}  // namespace tandem::bench
