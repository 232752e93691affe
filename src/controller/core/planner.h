// Planner: turns smoothed signals into the (prefill, decode) instance counts to run now.
//
// Capacity model (DistServe §4, replicate each phase: N = ⌈load ÷ per-instance goodput⌉):
//   need(role)  = load ÷ (measured tokens per busy second × target_busy_fraction)
//   model(role) = ⌈need⌉ when that is above the current count (scale up);
//                 otherwise the count only comes down to n = ⌈need ÷ scale_down_headroom⌉
//                 (hysteresis: the load must fit in fewer instances with room to spare, so a
//                 load near a ceil() boundary does not flap), and for decode never below the
//                 count that keeps KV utilisation under its target (kv × current ÷ n ≤ target).
//   forecast: with a LoadForecast, ahead(role) = ⌈forecast load ÷ (capacity × target busy)⌉;
//     the role scales up to it when it is above both the count and ⌈need⌉ (reason forecast),
//     and never scales down below it.
//   SLO correction: when the model says the capacity is enough but the role misses its target,
//   the model is wrong in that direction: that role gets current + 1 and is never scaled down.
//   The planner remembers the count an SLO correction reached: for slo_memory_s it does not
//   scale that role below the count (reason: the SLO's) unless the role's load drops to 0.
//   Without this, a role that meets its SLO only with the extra instance flaps: the load model
//   takes the instance away, the SLO adds it back.
//     prefill: ttft_p99 > ttft_slo (reason ttft_slo), while the prefill workers are at least
//              slo_min_prefill_busy busy (less: the prompts hardly queue, the miss is their own
//              compute, and the detail says so)
//     decode:  itl_p99 > itl_slo (itl_slo); kv_utilization > kv_target, or a TTFT miss that is
//              mostly waiting for KV room, queue_p99 ≥ ½ ttft_p99 (kv_pressure)
//   No capacity measured yet (NaN) → hold (no_data), unless an SLO is missed.
// Then, in order:
//   1. bounds: clamp to [min, max] per role;
//   2. budget: when prefill + decode > max_total_instances, split the budget in proportion to
//      what each role asked for (largest remainder; an exact tie goes to the role the traffic
//      class favours — prompt_heavy: prefill, generation_heavy and balanced: decode, whose
//      shortage stalls every running stream), never below a role's min;
//   3. steps and cooldowns per role: at most max_step_up / max_step_down per Decide; scale-up
//      waits up_cooldown_s and scale-down down_cooldown_s since that role's last change (fast
//      up, slow down). The planner's first Decide counts as a change for scale-down only: a
//      fresh controller's averages are thin (cold-start samples, Dynamo #12430). Moving a count
//      back inside [min, max] ignores cooldowns;
//   4. the budget again: a scale-up that would overrun it while the other role's scale-down
//      still waits for its cooldown waits too (reason budget).
//
// Action: scale_up (some role up, none down), scale_down (some down, none up), rebalance (one up,
// the other down), hold. Reason vocabulary (a Prometheus label value; AllPlanReasons()):
//   prefill_load, decode_load — that role's load moved its count (up or down)
//   ttft_slo, itl_slo, kv_pressure — SLO correction added an instance
//   idle        — no traffic: scaling down to min, or holding there
//   bounds      — moving back inside [min, max], or holding at max while the model asks for more
//   budget      — a wanted scale-up does not fit max_total_instances (or the split of the
//                 budget takes an instance away)
//   cooldown    — a wanted change waits for its role's cooldown
//   no_data     — a role's capacity or load is not measured yet
//   steady      — the model asks for what runs
//   forecast    — the load forecast for when a new worker would be ready asks for more than
//                 the load now (scale-up ahead of a rise), or keeps a scale-down from happening
// A change's reason is that of the role scaling up (rebalance), else the first in the order
// bounds, budget, ttft_slo, itl_slo, kv_pressure, prefill_load, decode_load, forecast, idle. A hold's
// reason is the first role reason in the order cooldown, budget, bounds, no_data, ttft_slo,
// itl_slo, kv_pressure, forecast, steady, idle.
//
// Sizing by simulation (SetSizer, `--plan-by simulation`): a ShapeSizer replaces the capacity
// model's counts. It is asked for the cheapest (prefill, decode) within the bounds and the budget
// whose predicted SLO attainment meets its target at the arrival rate now (up), at the rate the
// forecast expects when a new worker would be ready (ahead, when that is higher), and at the
// rate ÷ scale_down_headroom (down: the hysteresis of a scale-down); each role then moves as
// with the capacity model's counts (SLO corrections, the SLO floor, bounds, budget, steps and
// cooldowns all apply). The SLO corrections then judge what the simulation counts: the quantile
// its attainment target names (p90 for a target up to 0.9, else p99) of TTFT and of each
// request's time per output token after its first (tpot), rather than p99 TTFT and ITL. With
// min_prefill 0 the sizer may choose no prefill worker at all: the
// decode workers then compute prompts themselves (colocated serving). Without a length or rate
// reading the sizer has nothing to simulate, and the capacity model plans.
//
// Deterministic: the same inputs and history give the same plan. Not thread-safe: the control
// loop owns one and calls Decide every few seconds with the counts the actuator reports.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/core/classifier.h"
#include "controller/core/signals.h"

namespace tandem::controller {

struct PlannerConfig {
  int min_prefill = 1;
  int max_prefill = 8;
  int min_decode = 1;
  int max_decode = 8;
  int max_total_instances = 16;  // the GPU/instance budget, prefill + decode
  int max_step_up = 2;           // per role per Decide
  int max_step_down = 1;
  double up_cooldown_s = 15;
  double down_cooldown_s = 60;
  double ttft_slo_s = 2.0;
  double itl_slo_s = 0.2;
  double target_busy_fraction = 0.7;   // headroom so queues stay short
  double kv_target_utilization = 0.8;
  double scale_down_headroom = 0.85;   // scale down to n only while need ≤ n × this
  // After an SLO correction took a role to n, it stays at n or more for this long unless the
  // traffic stops (0: no memory).
  double slo_memory_s = 600;
  // A TTFT miss adds a prefill worker only while the prefill workers are at least this busy
  // (prefill_busy_fraction; unknown, e.g. no prefill worker: it does). Below it a prompt seldom
  // waits for another, so its TTFT is its own compute (a long prompt), which one more worker
  // would not shorten. 0: every miss corrects.
  double slo_min_prefill_busy = 0.5;

  SloTargets slo() const { return {ttft_slo_s, itl_slo_s, kv_target_utilization}; }
};

absl::Status ValidatePlannerConfig(const PlannerConfig& config);

inline constexpr std::string_view kActionScaleUp = "scale_up";
inline constexpr std::string_view kActionScaleDown = "scale_down";
inline constexpr std::string_view kActionRebalance = "rebalance";
inline constexpr std::string_view kActionHold = "hold";

inline constexpr std::string_view kReasonPrefillLoad = "prefill_load";
inline constexpr std::string_view kReasonDecodeLoad = "decode_load";
inline constexpr std::string_view kReasonTtftSlo = "ttft_slo";
inline constexpr std::string_view kReasonItlSlo = "itl_slo";
inline constexpr std::string_view kReasonKvPressure = "kv_pressure";
inline constexpr std::string_view kReasonIdle = "idle";
inline constexpr std::string_view kReasonBounds = "bounds";
inline constexpr std::string_view kReasonBudget = "budget";
inline constexpr std::string_view kReasonCooldown = "cooldown";
inline constexpr std::string_view kReasonNoData = "no_data";
inline constexpr std::string_view kReasonSteady = "steady";
inline constexpr std::string_view kReasonForecast = "forecast";

// What the control loop's forecasters expect each role's load (tokens/s, as DemandEstimate's
// loads) to be when a worker started now would be ready, and that horizon. NaN: no forecast.
struct LoadForecast {
  double prefill_load = kNoData;
  double decode_load = kNoData;
  double prefill_horizon_s = kNoData;
  double decode_horizon_s = kNoData;
};

// What a ShapeSizer answers: the counts it chose and what it predicts for them.
struct SizedCounts {
  InstanceCounts counts;
  double rate = 0;           // requests/s it sized for
  double attainment = 0;     // predicted share of requests within both SLOs, 0..1
  bool meets_target = false; // false: no shape within the bounds met the target; the best one
  int shapes_tried = 0;
  std::string detail;        // for people: the shapes tried and their attainment
};

class ShapeSizer {
 public:
  virtual ~ShapeSizer() = default;
  // The cheapest counts within `config`'s bounds and budget whose predicted attainment of
  // `config`'s SLOs meets the sizer's target at `rate` requests/s, with the lengths of
  // `smoothed` (`current`, the counts running, wins ties); nullopt when the signals do not say
  // enough (no prompt or output lengths).
  virtual std::optional<SizedCounts> Size(const Signals& smoothed, double rate, const PlannerConfig& config,
                                          const InstanceCounts& current) = 0;
  // The share of requests its shapes must serve within the SLOs.
  virtual double attainment_target() const = 0;
};

// Every action and every reason Decide can return (to pre-create metric series).
std::span<const std::string_view> AllPlanActions();
std::span<const std::string_view> AllPlanReasons();

// One role's path through the planner.
struct RolePlan {
  int current = 0;
  double need = kNoData;  // instances at target_busy_fraction; NaN when unknown
  int model = 0;          // what load and SLOs ask for
  int target = 0;         // after bounds and budget
  int desired = 0;        // after steps and cooldowns: what to run now
  std::string reason;     // from the vocabulary above
};

struct Plan {
  InstanceCounts current;
  InstanceCounts desired;
  std::string action;  // kAction*
  std::string reason;  // kReason*
  std::string detail;  // for people: the numbers behind the plan
  TrafficClass cls = TrafficClass::kBalanced;
  DemandEstimate demand;
  // With a sizer: what it chose for the rate now (nullopt: the capacity model planned).
  std::optional<SizedCounts> sized;
  RolePlan prefill;
  RolePlan decode;

  bool changes() const { return !(desired == current); }
};

class Planner {
 public:
  // `config` must pass ValidatePlannerConfig (checked); Create returns its error instead.
  explicit Planner(PlannerConfig config = {});
  static absl::StatusOr<std::unique_ptr<Planner>> Create(const PlannerConfig& config);

  // Plans from smoothed signals, the classifier's class and the counts the actuator reports.
  // Remembers the time of each role's change (desired ≠ current) for the cooldowns.
  Plan Decide(const Signals& smoothed, TrafficClass cls, const InstanceCounts& current,
              double now_s, const LoadForecast& forecast = {});

  const PlannerConfig& config() const { return config_; }
  // Plans with `sizer`'s counts instead of the capacity model's (null: the capacity model).
  // `sizer` must outlive the planner.
  void SetSizer(ShapeSizer* sizer) { sizer_ = sizer; }

 private:
  // The counts one role's model chooses among.
  struct RoleCounts {
    double need = kNoData;  // instances the load now asks for (NaN: unknown)
    int up = 0;             // ⌈need⌉
    int ahead = 0;          // what the forecast load asks for (0: no forecast)
    int down = 0;           // the fewest that hold the load with room to spare
  };
  struct Sizing {
    SizedCounts now;
    std::optional<SizedCounts> ahead;
    SizedCounts down;
  };
  // Whether TTFT and the token pace miss their SLOs, as the capacity model or the sizer judges.
  struct Lateness {
    bool ttft = false;
    bool tokens = false;
  };
  Lateness Late(const DemandEstimate& demand, const Signals& smoothed, bool sized) const;
  // TTFT is late but the prefill workers are too idle for a queue to be the cause.
  bool LateWithoutQueue(const DemandEstimate& demand, const Signals& smoothed, bool sized) const;
  RoleCounts CapacityCounts(Role role, const DemandEstimate& demand) const;
  static RoleCounts SizedRoleCounts(Role role, const Sizing& sizing);
  std::optional<Sizing> SizeBySimulation(const Signals& smoothed, const DemandEstimate& demand,
                                         const InstanceCounts& current);
  // `sized`: the counts are a sizer's (its decode SLO is each request's TPOT, tpot_p99).
  RolePlan Model(Role role, const DemandEstimate& demand, const Signals& smoothed, int current,
                 const RoleCounts& counts, bool sized) const;
  // Keeps a scale-down above the count an earlier SLO correction reached (slo_memory_s).
  void ApplySloFloor(Role role, const DemandEstimate& demand, RolePlan& rp, double now_s);
  void RememberSloFloor(Role role, const RolePlan& rp, double now_s);
  void ApplyBounds(Role role, RolePlan& rp) const;
  void FitBudget(TrafficClass cls, RolePlan& prefill, RolePlan& decode) const;
  void ApplyStepAndCooldown(Role role, RolePlan& rp, double now_s) const;
  void FitBudgetAfterSteps(RolePlan& prefill, RolePlan& decode) const;
  std::string Detail(const Plan& plan) const;

  PlannerConfig config_;
  ShapeSizer* sizer_ = nullptr;
  std::optional<double> start_s_;
  std::optional<double> last_change_s_[2];  // indexed by Role
  struct SloFloor {
    int count = 0;
    double since_s = 0;
    std::string reason;
  };
  std::optional<SloFloor> slo_floor_[2];  // indexed by Role
};

}  // namespace tandem::controller
