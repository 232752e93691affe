#include "controller/core/anomaly_guard.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "common/strings.h"
#include "fmt/format.h"

namespace tandem::controller {
namespace {

constexpr std::string_view kKinds[] = {kAnomalySpike, kAnomalyGap, kAnomalyWorkerLost};

// 1.4826 × MAD estimates the standard deviation of normally distributed data.
constexpr double kMadToSigma = 1.4826;

// The request means (prompt and output length) are not judged: a change of mix is the news the
// ratio should follow, and holding one role's load back while the other's moves would split one
// rebalance into two changes.
// The latency quantiles are every one an SLO correction may judge: p99 TTFT and ITL (the
// capacity model), p90/p99 TTFT and TPOT (sizing by simulation).
constexpr SignalField kJudged[] = {
    {"arrival_rate", &Signals::arrival_rate}, {"ttft_p90", &Signals::ttft_p90}, {"ttft_p99", &Signals::ttft_p99},
    {"itl_p99", &Signals::itl_p99},           {"tpot_p90", &Signals::tpot_p90}, {"tpot_p99", &Signals::tpot_p99},
};

constexpr SignalField kLatency[] = {
    {"ttft_p50", &Signals::ttft_p50}, {"ttft_p90", &Signals::ttft_p90}, {"ttft_p99", &Signals::ttft_p99},
    {"itl_p50", &Signals::itl_p50},   {"itl_p99", &Signals::itl_p99},   {"tpot_p90", &Signals::tpot_p90},
    {"tpot_p99", &Signals::tpot_p99}, {"queue_p99", &Signals::queue_p99},
};

double Median(std::vector<double> v) {
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + mid, v.end());
  const double upper = v[mid];
  if (v.size() % 2 == 1) return upper;
  return (*std::max_element(v.begin(), v.begin() + mid) + upper) / 2;
}

bool IsLatency(double Signals::*member) {
  return std::any_of(std::begin(kLatency), std::end(kLatency),
                     [member](const SignalField& f) { return f.member == member; });
}

std::string Num(double v) { return fmt::format("{:.4g}", v); }

// The scale a field is judged on: latency varies by factors, not by amounts (a p99 from a few
// requests is heavy-tailed), so it is judged on a log scale, where "twice the usual" is as far
// as "half the usual".
double JudgedValue(const SignalField& f, double v) {
  return IsLatency(f.member) ? std::log(std::max(v, 1e-9)) : v;
}

void AddKind(GuardVerdict& v, std::string_view kind, std::string_view why) {
  if (std::find(v.kinds.begin(), v.kinds.end(), kind) == v.kinds.end()) v.kinds.emplace_back(kind);
  if (!v.detail.empty()) v.detail += "; ";
  v.detail += why;
}

}  // namespace

std::span<const std::string_view> AllAnomalyKinds() { return kKinds; }

absl::Status ValidateAnomalyGuardOptions(const AnomalyGuardOptions& o) {
  auto bad = [](auto... parts) { return absl::InvalidArgumentError(StrCat(parts...)); };
  if (!(o.interval_s > 0)) return bad("anomaly guard interval must be > 0 s (got ", o.interval_s, ")");
  if (o.min_history < 2 || o.window < o.min_history) {
    return bad("anomaly guard needs 2 <= min_history <= window (got ", o.min_history, ", ", o.window, ")");
  }
  if (!(o.threshold > 0) || !(o.min_relative_change >= 0) || !(o.min_latency_factor >= 1)) {
    return bad("anomaly guard threshold must be > 0, min_relative_change >= 0 and min_latency_factor >= 1");
  }
  if (o.confirm_readings < 1) return bad("anomaly guard confirm_readings must be >= 1");
  if (!(o.max_gap_factor > 1)) return bad("anomaly guard max_gap_factor must be > 1");
  if (!(o.settle_s >= 0)) return bad("anomaly guard settle time must be >= 0 s");
  return absl::OkStatus();
}

AnomalyGuard::AnomalyGuard(AnomalyGuardOptions options)
    : options_(options), fields_(std::size(kJudged)) {
  const absl::Status st = ValidateAnomalyGuardOptions(options_);
  TANDEM_CHECK(st.ok()) << st.ToString();
}

std::span<const SignalField> AnomalyGuard::JudgedFields() { return kJudged; }
std::span<const SignalField> AnomalyGuard::LatencyFields() { return kLatency; }

void AnomalyGuard::Accept(FieldState& st, double v) {
  st.history.push_back(v);
  while (st.history.size() > static_cast<size_t>(options_.window)) st.history.pop_front();
}

bool AnomalyGuard::JudgeField(FieldState& st, const SignalField& field, double v, double window_s,
                              std::string& why) {
  const bool log_scale = IsLatency(field.member);
  const double x = JudgedValue(field, v);
  if (st.history.size() < static_cast<size_t>(options_.min_history)) {
    Accept(st, x);
    return false;
  }
  const std::vector<double> values(st.history.begin(), st.history.end());
  const double median = Median(values);
  std::vector<double> deviations;
  for (double h : values) deviations.push_back(std::abs(h - median));
  const double mad = Median(deviations);
  const double relative = log_scale ? std::log(options_.min_latency_factor)
                                    : options_.min_relative_change * std::abs(median);
  double limit = std::max(options_.threshold * kMadToSigma * mad, relative);
  if (field.member == &Signals::arrival_rate && window_s > 0) {
    limit = std::max(limit, options_.threshold * std::sqrt(std::max(median * window_s, 1.0)) / window_s);
  }
  const double deviation = x - median;
  if (std::abs(deviation) <= limit) {
    st.pending.clear();
    Accept(st, x);
    return false;
  }
  const int side = deviation > 0 ? 1 : -1;
  if (side != st.side) st.pending.clear();
  st.side = side;
  st.pending.push_back(x);
  if (st.pending.size() >= static_cast<size_t>(options_.confirm_readings)) {
    st.history.assign(st.pending.begin(), st.pending.end());
    st.pending.clear();
    return false;  // a new level
  }
  const std::string spread = log_scale ? fmt::format("typically within x{}", Num(std::exp(kMadToSigma * mad)))
                                       : fmt::format("MAD {}", Num(mad));
  why = fmt::format("{} {} against a median of {} ({}), ignored ({} of {} before it counts as a new level)",
                    field.name, Num(v), Num(log_scale ? std::exp(median) : median), spread, st.pending.size(),
                    options_.confirm_readings);
  return true;
}

GuardVerdict AnomalyGuard::Judge(const Signals& raw, const InstanceCounts& current) {
  GuardVerdict verdict;
  verdict.reading = raw;
  if (last_time_s_ && raw.time_s < *last_time_s_) {  // the source restarted its clock
    *this = AnomalyGuard(options_);
  }
  const bool gap = last_time_s_ && raw.time_s - *last_time_s_ > options_.max_gap_factor * options_.interval_s;
  if (gap) {
    verdict.hold = true;
    AddKind(verdict, kAnomalyGap,
            fmt::format("{} s since the previous reading (interval {} s): its rates average over the gap; "
                        "holding one tick",
                        Num(raw.time_s - *last_time_s_), Num(options_.interval_s)));
  }
  if (last_ready_) {
    for (Role role : {Role::kPrefill, Role::kDecode}) {
      auto count = [role](const InstanceCounts& c) { return role == Role::kPrefill ? c.prefill : c.decode; };
      if (count(raw.ready) < count(*last_ready_) && count(raw.ready) < count(current)) {
        settle_until_s_ = raw.time_s + options_.settle_s;
        AddKind(verdict, kAnomalyWorkerLost,
                fmt::format("{} ready {} -> {} while {} are wanted: a worker was lost; latency ignored for {} s",
                            RoleName(role), count(*last_ready_), count(raw.ready), count(current),
                            Num(options_.settle_s)));
      }
    }
  }
  const bool settling = settle_until_s_ && raw.time_s < *settle_until_s_;
  if (settling) {
    for (const SignalField& f : kLatency) verdict.reading.*f.member = kNoData;
  }
  for (size_t i = 0; i < std::size(kJudged); ++i) {
    const SignalField& f = kJudged[i];
    const double v = raw.*f.member;
    if (!HasData(v) || (settling && IsLatency(f.member))) continue;
    if (gap) {
      Accept(fields_[i], JudgedValue(f, v));
      continue;
    }
    std::string why;
    if (!JudgeField(fields_[i], f, v, raw.window_s, why)) continue;
    verdict.reading.*f.member = kNoData;
    if (f.member == &Signals::arrival_rate) verdict.reading.prompt_token_rate = kNoData;
    AddKind(verdict, kAnomalySpike, why);
  }
  last_time_s_ = raw.time_s;
  last_ready_ = raw.ready;
  return verdict;
}

Signals AnomalyGuard::PlanningView(const Signals& smoothed, const Signals& raw) {
  Signals view = smoothed;
  const bool nothing_arrived = HasData(raw.arrival_rate) && raw.arrival_rate <= 0;
  const bool nothing_in_flight = !HasData(raw.inflight_requests) || raw.inflight_requests <= 0;
  if (nothing_arrived && nothing_in_flight) {
    for (const SignalField& f : kLatency) view.*f.member = kNoData;
  }
  return view;
}

}  // namespace tandem::controller
