#include "bench/arrivals.h"

#include <cmath>
#include <limits>

#include "bench/text_util.h"
#include "common/strings.h"

namespace tandem::bench {
namespace {

// One interarrival gap of the gamma process (vLLM: np.random.gamma(shape=b, scale=1/(rate*b))).
double GammaGap(double rate, double burstiness, Rng& rng) {
  std::gamma_distribution<double> gap(burstiness, 1.0 / (rate * burstiness));
  return gap(rng);
}

absl::StatusOr<SchedulePhase> ParsePhase(std::string_view text) {
  SchedulePhase phase;
  const size_t at = text.find('@');
  if (at == std::string_view::npos) {
    return absl::InvalidArgumentError(
        StrCat("'", text, "' is not <duration>s@<rate>[:<workload>], e.g. 60s@2:chat"));
  }
  std::string_view duration = Trim(text.substr(0, at));
  if (!duration.empty() && duration.back() == 's') duration.remove_suffix(1);
  std::string_view rest = text.substr(at + 1);
  std::string_view rate = rest;
  if (const size_t colon = rest.find(':'); colon != std::string_view::npos) {
    rate = rest.substr(0, colon);
    phase.workload = std::string(Trim(rest.substr(colon + 1)));
  }
  auto d = ParseDouble(duration);
  if (!d.ok() || !(*d > 0) || !std::isfinite(*d)) {
    return absl::InvalidArgumentError(StrCat("duration '", duration, "' must be a positive number of seconds"));
  }
  auto r = ParseDouble(Trim(rate));
  if (!r.ok() || !(*r >= 0) || !std::isfinite(*r)) {
    return absl::InvalidArgumentError(StrCat("rate '", Trim(rate), "' must be a finite number >= 0"));
  }
  phase.duration_s = *d;
  phase.rate = *r;
  return phase;
}

}  // namespace

absl::Status ValidateArrivalProcess(const ArrivalProcess& p) {
  if (!(p.rate > 0)) {
    return absl::InvalidArgumentError(StrCat("the request rate must be > 0 (or inf), not ", p.rate));
  }
  if (!(p.burstiness > 0) || !std::isfinite(p.burstiness)) {
    return absl::InvalidArgumentError(StrCat("the burstiness must be a finite number > 0, not ", p.burstiness));
  }
  return absl::OkStatus();
}

std::vector<double> GammaArrivals(const ArrivalProcess& process, int n, Rng& rng) {
  std::vector<double> times;
  times.reserve(n > 0 ? n : 0);
  double t = 0;
  for (int i = 0; i < n; ++i) {
    if (i > 0 && std::isfinite(process.rate)) t += GammaGap(process.rate, process.burstiness, rng);
    times.push_back(t);
  }
  return times;
}

absl::StatusOr<std::vector<SchedulePhase>> ParseSchedule(std::string_view text) {
  const bool multiline = text.find('\n') != std::string_view::npos;
  std::vector<SchedulePhase> phases;
  int number = 0;
  for (std::string_view item : Split(text, multiline ? '\n' : ';')) {
    ++number;
    if (multiline) {
      if (const size_t hash = item.find('#'); hash != std::string_view::npos) item = item.substr(0, hash);
    }
    item = Trim(item);
    if (item.empty()) continue;
    auto phase = ParsePhase(item);
    if (!phase.ok()) {
      return absl::InvalidArgumentError(
          StrCat("schedule ", multiline ? "line " : "phase ", number, ": ", phase.status().message()));
    }
    phases.push_back(*std::move(phase));
  }
  if (phases.empty()) return absl::InvalidArgumentError("the schedule has no phases");
  return phases;
}

std::vector<ScheduledArrival> ScheduleArrivals(const std::vector<SchedulePhase>& phases,
                                               double burstiness, Rng& rng) {
  std::vector<ScheduledArrival> out;
  double start = 0;
  for (size_t i = 0; i < phases.size(); ++i) {
    const SchedulePhase& p = phases[i];
    const double end = start + p.duration_s;
    if (p.rate > 0) {
      for (double t = start + GammaGap(p.rate, burstiness, rng); t < end; t += GammaGap(p.rate, burstiness, rng)) {
        out.push_back({t, static_cast<int>(i)});
      }
    }
    start = end;
  }
  return out;
}

double ScheduleDuration(const std::vector<SchedulePhase>& phases) {
  double total = 0;
  for (const auto& p : phases) total += p.duration_s;
  return total;
}

std::string FormatRate(double rate) {
  if (std::isinf(rate)) return "inf";
  return fmt::format("{:.4g}", rate);
}

}  // namespace tandem::bench
