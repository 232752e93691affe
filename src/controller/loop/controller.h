// Controller: the control loop. Every tick it reads the signals (SignalSource), keeps what should
// not move the ratio out of them (AnomalyGuard), smooths them (SignalSmoother), classifies the traffic (Classifier), plans the instance counts (Planner),
// asks the actuator to move there (unless dry-run), writes the decision log and exports its
// state as tandem_controller_* metrics.
//
// Thread-safe: Tick() and Run() from one thread; Stop() and the metrics from any.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "controller/core/actuator.h"
#include "controller/core/anomaly_guard.h"
#include "controller/core/classifier.h"
#include "controller/core/decision_log.h"
#include "controller/core/forecaster.h"
#include "controller/core/planner.h"
#include "controller/core/signal_source.h"
#include "controller/core/smoother.h"
#include "controller/loop/drained_out_guard.h"
#include "metrics/registry.h"

namespace tandem::controller {

struct ControllerOptions {
  double interval_s = 5;
  bool dry_run = false;
  // Asked before every tick; false: this replica stands by (no reading, no decision, no
  // action) — another one leads (leader_election.h). Empty: always act.
  std::function<bool()> may_act;
  // The guard's interval_s is taken from interval_s above. Off: every reading is taken as is.
  bool anomaly_guard = true;
  AnomalyGuardOptions guard;
  // Forecast each role's load for when a worker started now would be ready (its start-up time,
  // measured from this controller's own scale-ups) and plan for it. Until a start-up has been
  // measured, there is no look-ahead.
  bool forecast = true;
  ForecastOptions forecasting;
  SmootherOptions smoother;
  ClassifierOptions classifier;
  PlannerConfig planner;
  // Sizes the cluster by simulation instead of the capacity model (planner.h); null: the
  // capacity model.
  std::shared_ptr<ShapeSizer> sizer;
};

class Controller {
 public:
  // `source`, `actuator`, `log` (may be null) and `registry` must outlive the controller.
  Controller(ControllerOptions options, SignalSource* source, Actuator* actuator, DecisionLog* log,
             metrics::MetricsRegistry* registry);
  ~Controller();

  // One read → smooth → classify → plan → act → log. `now_s` monotonic seconds (the sources'
  // clock). Returns the decision (also when the source failed: action hold, result = error).
  DecisionRecord Tick(double now_s);
  // Ticks every interval_s until Stop().
  void Run();
  void Stop();

  // The last decision (for `tandem up`'s status line and tests).
  DecisionRecord last() const;
  // Checked at every tick before the plan (may be null; must outlive the controller).
  void SetDrainedOutGuard(DrainedOutGuard* guard) { guard_ = guard; }

 private:
  struct Metrics;
  // Guard → smooth → classify → plan on one reading; fills the record's inputs and anomalies.
  Plan Decide(const Signals& reading, const InstanceCounts& current, double now_s, DecisionRecord& rec);
  // Times the scale-ups NoteStarts remembered: a role's start-up time is measured when its ready
  // workers reach the target (every tick, held or not; a scale-in calls the timing off).
  void TrackReadiness(const Signals& reading, const InstanceCounts& current, double now_s);
  // Feeds the forecasters with this tick's loads and asks them for each role's start-up horizon.
  LoadForecast ForecastLoads(const DemandEstimate& demand, double now_s);
  // Remembers the scale-ups an applied plan started, to time how long the workers take to be ready.
  void NoteStarts(const Plan& plan, double now_s);
  // Takes the actuator's report of how it moved workers between roles into `rec` and the metrics.
  void NoteActuation(DecisionRecord& rec);
  // Runs the drained-out guard; what it restored is a decision of its own in the log.
  void RestoreDrainedOut();

  const ControllerOptions options_;
  SignalSource* source_;
  Actuator* actuator_;
  DecisionLog* log_;
  std::unique_ptr<Metrics> metrics_;
  AnomalyGuard anomaly_guard_;
  SignalSmoother smoother_;
  Classifier classifier_;
  Planner planner_;
  DrainedOutGuard* guard_ = nullptr;
  struct Start {
    int target = 0;       // ready instances that mean the start is done
    double since_s = 0;   // when it was asked for
  };
  SeriesForecaster forecasters_[2];           // indexed by Role
  std::optional<Start> starting_[2];
  std::optional<double> ready_time_s_[2];     // measured start-up time, by role

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  DecisionRecord last_;
};

}  // namespace tandem::controller
