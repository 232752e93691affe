#include "controller/core/planner.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <tuple>

#include "common/check.h"
#include "common/strings.h"
#include "fmt/format.h"

namespace tandem::controller {
namespace {

constexpr std::string_view kActions[] = {kActionScaleUp, kActionScaleDown, kActionRebalance,
                                         kActionHold};
constexpr std::string_view kReasons[] = {
    kReasonPrefillLoad, kReasonDecodeLoad, kReasonTtftSlo, kReasonItlSlo,
    kReasonKvPressure,  kReasonIdle,       kReasonBounds,  kReasonBudget,
    kReasonCooldown,    kReasonNoData,     kReasonSteady,  kReasonForecast};

// The reason of a plan that changes counts, and of one that holds, by priority.
constexpr std::string_view kChangePriority[] = {
    kReasonBounds,      kReasonBudget,     kReasonTtftSlo, kReasonItlSlo, kReasonKvPressure,
    kReasonPrefillLoad, kReasonDecodeLoad, kReasonForecast, kReasonIdle};
constexpr std::string_view kHoldPriority[] = {
    kReasonCooldown,   kReasonBudget,   kReasonBounds, kReasonNoData, kReasonTtftSlo, kReasonItlSlo,
    kReasonKvPressure, kReasonForecast, kReasonSteady, kReasonIdle};

// ⌈x⌉ as an instance count, forgiving float noise (2.0000000001 is 2), capped far above any
// sane bound so a huge load cannot overflow an int.
int CeilCount(double x) {
  if (!(x > 0)) return 0;
  return static_cast<int>(std::min(std::ceil(x - 1e-9), 1e6));
}

template <size_t N>
std::string_view FirstOf(const std::string_view (&order)[N], const RolePlan& a,
                         const RolePlan& b, bool use_a, bool use_b) {
  for (std::string_view r : order) {
    if ((use_a && a.reason == r) || (use_b && b.reason == r)) return r;
  }
  return use_a ? a.reason : b.reason;
}

// A number for the detail string: "n/a" where there is no data.
std::string Num(double v, int precision = 3) {
  return HasData(v) ? fmt::format("{:.{}g}", v, precision) : std::string("n/a");
}

std::string RoleDetail(const char* name, const RolePlan& rp, double load, double capacity,
                       double busy, bool sized) {
  if (sized) {
    return fmt::format("{} {}->{} [{}]: simulation asks {}, model {}, target {}", name, rp.current, rp.desired,
                       rp.reason, Num(rp.need), rp.model, rp.target);
  }
  return fmt::format("{} {}->{} [{}]: need {} = {} tok/s / ({} tok/busy-s x {}), model {}, "
                     "target {}",
                     name, rp.current, rp.desired, rp.reason, Num(rp.need), Num(load, 4),
                     Num(capacity, 4), Num(busy, 2), rp.model, rp.target);
}

}  // namespace

std::span<const std::string_view> AllPlanActions() { return kActions; }
std::span<const std::string_view> AllPlanReasons() { return kReasons; }

absl::Status ValidatePlannerConfig(const PlannerConfig& c) {
  auto bad = [](auto... parts) { return absl::InvalidArgumentError(StrCat(parts...)); };
  if (c.min_prefill < 0 || c.max_prefill < std::max(c.min_prefill, 1)) {
    return bad("planner prefill bounds must satisfy 0 <= min <= max, max >= 1 (got min ",
               c.min_prefill, ", max ", c.max_prefill, ")");
  }
  if (c.min_decode < 0 || c.max_decode < std::max(c.min_decode, 1)) {
    return bad("planner decode bounds must satisfy 0 <= min <= max, max >= 1 (got min ",
               c.min_decode, ", max ", c.max_decode, ")");
  }
  if (c.max_total_instances < std::max(c.min_prefill + c.min_decode, 1)) {
    return bad("planner max_total_instances (", c.max_total_instances,
               ") must hold the minimum of both roles (", c.min_prefill + c.min_decode, ")");
  }
  if (c.max_step_up < 1 || c.max_step_down < 1) {
    return bad("planner step limits must be >= 1 (got up ", c.max_step_up, ", down ",
               c.max_step_down, ")");
  }
  if (!(c.up_cooldown_s >= 0) || !(c.down_cooldown_s >= 0) || !(c.slo_memory_s >= 0)) {
    return bad("planner cooldowns and SLO memory must be >= 0 s");
  }
  if (!(c.slo_min_prefill_busy >= 0 && c.slo_min_prefill_busy <= 1)) {
    return bad("planner slo_min_prefill_busy must be in [0, 1] (got ", c.slo_min_prefill_busy, ")");
  }
  if (!(c.ttft_slo_s > 0) || !(c.itl_slo_s > 0)) return bad("planner SLOs must be > 0 s");
  for (double f : {c.target_busy_fraction, c.kv_target_utilization, c.scale_down_headroom}) {
    if (!(f > 0 && f <= 1)) {
      return bad("planner target_busy_fraction, kv_target_utilization and "
                 "scale_down_headroom must be in (0, 1] (got ", f, ")");
    }
  }
  return absl::OkStatus();
}

Planner::Planner(PlannerConfig config) : config_(config) {
  const absl::Status st = ValidatePlannerConfig(config_);
  TANDEM_CHECK(st.ok()) << st.ToString();
}

absl::StatusOr<std::unique_ptr<Planner>> Planner::Create(const PlannerConfig& config) {
  absl::Status st = ValidatePlannerConfig(config);
  if (!st.ok()) return st;
  return std::make_unique<Planner>(config);
}

Planner::Lateness Planner::Late(const DemandEstimate& d, const Signals& s, bool sized) const {
  if (!sized || sizer_ == nullptr) return {d.ttft_over_slo(), d.itl_over_slo()};
  // What the simulation counts: a share of requests within the SLOs, each by its TTFT and its TPOT.
  const bool p90 = sizer_->attainment_target() <= 0.9;
  const double ttft = p90 ? s.ttft_p90 : s.ttft_p99;
  const double tpot = p90 ? s.tpot_p90 : s.tpot_p99;
  return {HasData(ttft) ? ttft > config_.ttft_slo_s : d.ttft_over_slo(),
          HasData(tpot) ? tpot > config_.itl_slo_s : d.itl_over_slo()};
}

bool Planner::LateWithoutQueue(const DemandEstimate& d, const Signals& s, bool sized) const {
  return Late(d, s, sized).ttft && !d.ttft_from_queue && HasData(s.prefill_busy_fraction) &&
         s.prefill_busy_fraction < config_.slo_min_prefill_busy;
}

Planner::RoleCounts Planner::CapacityCounts(Role role, const DemandEstimate& d) const {
  const bool prefill = role == Role::kPrefill;
  const double demand = prefill ? d.prefill_demand : d.decode_demand;
  RoleCounts c;
  c.need = HasData(demand) ? demand / config_.target_busy_fraction : kNoData;
  if (!HasData(c.need)) return c;
  const double capacity = prefill ? d.prefill_capacity : d.decode_capacity;
  const double load_ahead = prefill ? d.prefill_load_ahead : d.decode_load_ahead;
  c.ahead = HasData(load_ahead) && HasData(capacity) && capacity > 0
                ? CeilCount(load_ahead / capacity / config_.target_busy_fraction)
                : 0;
  c.up = CeilCount(c.need);
  c.down = CeilCount(c.need / config_.scale_down_headroom);
  return c;
}

Planner::RoleCounts Planner::SizedRoleCounts(Role role, const Sizing& z) {
  const auto of = [role](const SizedCounts& s) { return role == Role::kPrefill ? s.counts.prefill : s.counts.decode; };
  RoleCounts c;
  c.up = of(z.now);
  c.need = c.up;
  c.ahead = z.ahead ? of(*z.ahead) : 0;
  c.down = std::max(c.up, of(z.down));
  return c;
}

std::optional<Planner::Sizing> Planner::SizeBySimulation(const Signals& s, const DemandEstimate& d,
                                                         const InstanceCounts& current) {
  if (sizer_ == nullptr || !HasData(s.arrival_rate)) return std::nullopt;
  const double rate = std::max(s.arrival_rate, 0.0);
  std::optional<SizedCounts> now = sizer_->Size(s, rate, config_, current);
  if (!now) return std::nullopt;
  Sizing z{*now, std::nullopt, *now};
  // The forecast is of each role's load; the rate grows by the larger of their ratios.
  double factor = 1;
  for (auto [load, ahead] : {std::pair{d.prefill_load, d.prefill_load_ahead}, std::pair{d.decode_load, d.decode_load_ahead}}) {
    if (HasData(load) && HasData(ahead) && load > 0) factor = std::max(factor, ahead / load);
  }
  if (rate > 0 && factor > 1.05) z.ahead = sizer_->Size(s, rate * factor, config_, current);
  if (rate > 0 && (now->counts.prefill < current.prefill || now->counts.decode < current.decode)) {
    if (auto down = sizer_->Size(s, rate / config_.scale_down_headroom, config_, current)) z.down = *down;
  }
  return z;
}

RolePlan Planner::Model(Role role, const DemandEstimate& d, const Signals& s, int current,
                        const RoleCounts& c, bool sized) const {
  RolePlan rp;
  rp.current = current;
  const bool prefill = role == Role::kPrefill;
  const double load = prefill ? d.prefill_load : d.decode_load;
  const std::string_view load_reason = prefill ? kReasonPrefillLoad : kReasonDecodeLoad;
  const Lateness late = Late(d, s, sized);
  std::string_view slo_reason;
  if (prefill) {
    if (late.ttft && !d.ttft_from_queue && !LateWithoutQueue(d, s, sized)) slo_reason = kReasonTtftSlo;
  } else if (late.tokens) {
    slo_reason = kReasonItlSlo;
  } else if (d.kv_over_target() || (late.ttft && d.ttft_from_queue)) {
    slo_reason = kReasonKvPressure;
  }

  rp.need = c.need;
  if (!HasData(rp.need)) {
    rp.model = slo_reason.empty() ? current : current + 1;
    rp.reason = slo_reason.empty() ? kReasonNoData : slo_reason;
    return rp;
  }
  if (std::max(c.up, c.ahead) > current) {
    rp.model = std::max(c.up, c.ahead);
    rp.reason = c.up >= c.ahead ? load_reason : kReasonForecast;
    return rp;
  }
  if (!slo_reason.empty()) {  // the model says enough, the SLO says otherwise
    rp.model = current + 1;
    rp.reason = slo_reason;
    return rp;
  }
  int down = c.down;
  if (!prefill && HasData(s.kv_utilization)) {
    // The KV the running requests hold must fit in the fewer decode instances.
    down = std::max(down, CeilCount(s.kv_utilization * current / config_.kv_target_utilization));
  }
  const bool held_by_forecast = c.ahead > down && down < current;
  down = std::max(down, c.ahead);
  rp.model = std::min(current, down);
  const bool idle = load <= 0 && !held_by_forecast;
  if (rp.model < current) {
    rp.reason = idle ? kReasonIdle : load_reason;
  } else {
    rp.reason = idle ? kReasonIdle : held_by_forecast ? kReasonForecast : kReasonSteady;
  }
  return rp;
}

void Planner::ApplySloFloor(Role role, const DemandEstimate& d, RolePlan& rp, double now_s) {
  std::optional<SloFloor>& floor = slo_floor_[static_cast<int>(role)];
  if (!floor) return;
  const double load = role == Role::kPrefill ? d.prefill_load : d.decode_load;
  const bool expired = now_s - floor->since_s > config_.slo_memory_s;
  // Only the traffic stopping ends it early: at low rates the load swings by factors between
  // readings (one long prompt more or less), so "the load fell" would end it at random.
  const bool stopped = HasData(load) && load <= 0;
  if (expired || stopped) {
    floor.reset();
    return;
  }
  if (rp.model < rp.current && rp.model < floor->count) {
    rp.model = std::min(rp.current, floor->count);
    rp.reason = floor->reason;
  }
}

void Planner::RememberSloFloor(Role role, const RolePlan& rp, double now_s) {
  const bool slo = rp.reason == kReasonTtftSlo || rp.reason == kReasonItlSlo || rp.reason == kReasonKvPressure;
  if (!slo || rp.desired <= rp.current || config_.slo_memory_s <= 0) return;
  slo_floor_[static_cast<int>(role)] = SloFloor{rp.desired, now_s, rp.reason};
}

void Planner::ApplyBounds(Role role, RolePlan& rp) const {
  const bool prefill = role == Role::kPrefill;
  const int lo = prefill ? config_.min_prefill : config_.min_decode;
  const int hi = prefill ? config_.max_prefill : config_.max_decode;
  rp.target = std::clamp(rp.model, lo, hi);
  if (rp.current < lo || rp.current > hi) {
    rp.reason = kReasonBounds;
  } else if (rp.target == rp.current && rp.model > hi) {
    rp.reason = kReasonBounds;  // at max, the model asks for more
  } else if (rp.target == rp.current && rp.model < rp.current && rp.reason != kReasonIdle) {
    rp.reason = kReasonSteady;  // at min, the load would allow fewer
  }
}

void Planner::FitBudget(TrafficClass cls, RolePlan& p, RolePlan& d) const {
  const int64_t budget = config_.max_total_instances;
  const int64_t tp = p.target, td = d.target, den = tp + td;
  if (den <= budget) return;
  int64_t np = budget * tp / den, nd = budget * td / den;
  if (np + nd < budget) {  // one seat left over: largest remainder, ties by class
    const int64_t rem_p = budget * tp % den, rem_d = budget * td % den;
    const bool prefill_wins =
        rem_p > rem_d || (rem_p == rem_d && cls == TrafficClass::kPromptHeavy);
    ++(prefill_wins ? np : nd);
  }
  if (np < config_.min_prefill) {
    np = config_.min_prefill;
    nd = budget - np;
  }
  if (nd < config_.min_decode) {
    nd = config_.min_decode;
    np = budget - nd;
  }
  for (auto [rp, n] : {std::pair<RolePlan*, int64_t>{&p, np}, {&d, nd}}) {
    if (n != rp->target && n <= rp->current) rp->reason = kReasonBudget;
    rp->target = static_cast<int>(n);
  }
}

void Planner::ApplyStepAndCooldown(Role role, RolePlan& rp, double now_s) const {
  const bool prefill = role == Role::kPrefill;
  const int lo = prefill ? config_.min_prefill : config_.min_decode;
  const int hi = prefill ? config_.max_prefill : config_.max_decode;
  const bool out_of_bounds = rp.current < lo || rp.current > hi;
  const std::optional<double>& last = last_change_s_[static_cast<int>(role)];
  rp.desired = rp.current;
  if (rp.target > rp.current) {
    if (!out_of_bounds && last && now_s - *last < config_.up_cooldown_s) {
      rp.reason = kReasonCooldown;
      return;
    }
    rp.desired = rp.current + std::min(config_.max_step_up, rp.target - rp.current);
  } else if (rp.target < rp.current) {
    const double since = last ? *last : *start_s_;
    if (!out_of_bounds && now_s - since < config_.down_cooldown_s) {
      rp.reason = kReasonCooldown;
      return;
    }
    rp.desired = rp.current - std::min(config_.max_step_down, rp.current - rp.target);
  }
}

void Planner::FitBudgetAfterSteps(RolePlan& p, RolePlan& d) const {
  int excess = p.desired + d.desired - config_.max_total_instances;
  for (RolePlan* rp : {&p, &d}) {
    if (excess <= 0) return;
    const int cut = std::min(excess, std::max(rp->desired - rp->current, 0));
    if (cut == 0) continue;
    rp->desired -= cut;
    excess -= cut;
    if (rp->desired == rp->current) rp->reason = kReasonBudget;
  }
}

std::string Planner::Detail(const Plan& plan) const {
  const DemandEstimate& d = plan.demand;
  const double busy = config_.target_busy_fraction;
  std::string out = StrCat(
      RoleDetail("prefill", plan.prefill, d.prefill_load, d.prefill_capacity, busy, plan.sized.has_value()), "; ",
      RoleDetail("decode", plan.decode, d.decode_load, d.decode_capacity, busy, plan.sized.has_value()));
  for (auto [name, load, horizon] : {std::tuple{"prefill", d.prefill_load_ahead, d.prefill_horizon_s},
                                     std::tuple{"decode", d.decode_load_ahead, d.decode_horizon_s}}) {
    if (HasData(load)) out += fmt::format("; forecast {} {} tok/s in {} s", name, Num(load, 4), Num(horizon));
  }
  if (HasData(d.cached_fraction)) {
    out += fmt::format("; prompt tokens cached {}%", Num(100 * d.cached_fraction));
  }
  out += fmt::format("; ttft_p99/slo {}, itl_p99/slo {}, kv/target {}", Num(d.ttft_ratio),
                     Num(d.itl_ratio), Num(d.kv_ratio));
  if (d.ttft_from_queue) out += " (ttft mostly waiting for KV room)";
  out += fmt::format("; class {}, budget {}", TrafficClassName(plan.cls),
                     config_.max_total_instances);
  if (plan.sized) out += "; " + plan.sized->detail;
  return out;
}

Plan Planner::Decide(const Signals& smoothed, TrafficClass cls, const InstanceCounts& current,
                     double now_s, const LoadForecast& forecast) {
  if (!start_s_) start_s_ = now_s;
  Plan plan;
  plan.current = current;
  plan.cls = cls;
  plan.demand = EstimateDemand(smoothed, current, config_.slo());
  plan.demand.prefill_load_ahead = forecast.prefill_load;
  plan.demand.decode_load_ahead = forecast.decode_load;
  plan.demand.prefill_horizon_s = forecast.prefill_horizon_s;
  plan.demand.decode_horizon_s = forecast.decode_horizon_s;
  const InstanceCounts now{std::max(current.prefill, 0), std::max(current.decode, 0)};
  const std::optional<Sizing> sizing = SizeBySimulation(smoothed, plan.demand, now);
  for (auto [role, rp, n] : {std::tuple{Role::kPrefill, &plan.prefill, now.prefill},
                             std::tuple{Role::kDecode, &plan.decode, now.decode}}) {
    *rp = Model(role, plan.demand, smoothed, n, sizing ? SizedRoleCounts(role, *sizing) : CapacityCounts(role, plan.demand),
                sizing.has_value());
  }
  if (sizing) plan.sized = sizing->now;
  ApplySloFloor(Role::kPrefill, plan.demand, plan.prefill, now_s);
  ApplySloFloor(Role::kDecode, plan.demand, plan.decode, now_s);
  ApplyBounds(Role::kPrefill, plan.prefill);
  ApplyBounds(Role::kDecode, plan.decode);
  FitBudget(cls, plan.prefill, plan.decode);
  ApplyStepAndCooldown(Role::kPrefill, plan.prefill, now_s);
  ApplyStepAndCooldown(Role::kDecode, plan.decode, now_s);
  FitBudgetAfterSteps(plan.prefill, plan.decode);

  const RolePlan& p = plan.prefill;
  const RolePlan& d = plan.decode;
  plan.desired = {p.desired, d.desired};
  if (p.desired != p.current) last_change_s_[static_cast<int>(Role::kPrefill)] = now_s;
  if (d.desired != d.current) last_change_s_[static_cast<int>(Role::kDecode)] = now_s;
  RememberSloFloor(Role::kPrefill, p, now_s);
  RememberSloFloor(Role::kDecode, d, now_s);

  const bool p_up = p.desired > p.current, p_down = p.desired < p.current;
  const bool d_up = d.desired > d.current, d_down = d.desired < d.current;
  if ((p_up && d_down) || (d_up && p_down)) {
    plan.action = kActionRebalance;
    plan.reason = p_up ? p.reason : d.reason;
  } else if (p_up || d_up || p_down || d_down) {
    plan.action = (p_up || d_up) ? kActionScaleUp : kActionScaleDown;
    plan.reason = FirstOf(kChangePriority, p, d, p.desired != p.current, d.desired != d.current);
  } else {
    plan.action = kActionHold;
    plan.reason = FirstOf(kHoldPriority, p, d, true, true);
  }
  plan.detail = Detail(plan);
  if (LateWithoutQueue(plan.demand, smoothed, sizing.has_value())) {
    plan.detail += fmt::format("; ttft over the SLO with the prefill workers {}% busy: the prompts' own compute, not a "
                               "queue another worker would shorten", Num(100 * smoothed.prefill_busy_fraction));
  }
  return plan;
}

}  // namespace tandem::controller
