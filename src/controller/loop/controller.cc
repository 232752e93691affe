#include "controller/loop/controller.h"

#include <chrono>
#include <vector>

#include "common/logging.h"
#include "common/strings.h"

namespace tandem::controller {
namespace {

double MonotonicSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

AnomalyGuardOptions GuardOptions(const ControllerOptions& o) {
  AnomalyGuardOptions g = o.guard;
  g.interval_s = o.interval_s;
  return g;
}

double UnixSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

struct Controller::Metrics {
  metrics::GaugeFamily* desired;
  metrics::GaugeFamily* actual;
  metrics::GaugeFamily* traffic_class;
  metrics::CounterFamily* decisions;
  metrics::GaugeFamily* signal;
  metrics::GaugeFamily* demand;
  metrics::Counter* source_errors;
  metrics::Counter* actuator_errors;
  metrics::Counter* ticks;
  metrics::CounterFamily* anomalies;
  metrics::GaugeFamily* forecast_load;
  metrics::GaugeFamily* forecast_error;
  metrics::GaugeFamily* forecast_predictor;
  metrics::GaugeFamily* ready_seconds;
  metrics::CounterFamily* role_moves;
  metrics::GaugeFamily* predicted_attainment;  // its series appears with the first sized plan

  explicit Metrics(metrics::MetricsRegistry& r, const ControllerOptions& o) {
    desired = &r.AddGauge("tandem_controller_desired_instances", "Instances the controller wants, by role", {"role"});
    actual = &r.AddGauge("tandem_controller_actual_instances",
                         "Instances the actuator reports (asked for, including starting ones), by role", {"role"});
    traffic_class = &r.AddGauge("tandem_controller_traffic_class",
                                "1 for the traffic class the controller sees now, 0 for the others", {"class"});
    decisions = &r.AddCounter("tandem_controller_decisions_total", "Control-loop decisions by action and reason",
                              {"action", "reason"});
    signal = &r.AddGauge("tandem_controller_signal",
                         "The smoothed signals the controller decides on (units as in their names)", {"signal"});
    demand = &r.AddGauge("tandem_controller_demand_instances",
                         "Instances each role's load needs at 100% busy (load / measured capacity), by role",
                         {"role"});
    source_errors = &r.AddCounter("tandem_controller_source_errors_total",
                                  "Ticks whose signal reading failed (nothing was decided)")
                         .With();
    actuator_errors = &r.AddCounter("tandem_controller_actuator_errors_total",
                                    "Actuator calls that failed (retried at the next tick)")
                           .With();
    ticks = &r.AddCounter("tandem_controller_ticks_total", "Control-loop iterations").With();
    anomalies = &r.AddCounter("tandem_controller_anomalies_total",
                              "Readings the anomaly guard kept from moving the ratio, by kind", {"kind"});
    for (std::string_view kind : AllAnomalyKinds()) anomalies->With({std::string(kind)});
    forecast_load = &r.AddGauge("tandem_controller_forecast_load",
                                "Each role's load (tokens/s) forecast for when a worker started now would be ready",
                                {"role"});
    forecast_error = &r.AddGauge("tandem_controller_forecast_error",
                                 "Mean absolute error (tokens/s, recent-weighted) of each predictor's forecasts",
                                 {"role", "predictor"});
    forecast_predictor = &r.AddGauge("tandem_controller_forecast_predictor",
                                     "1 for the predictor each role's forecast uses now, 0 for the others",
                                     {"role", "predictor"});
    ready_seconds = &r.AddGauge("tandem_controller_worker_ready_seconds",
                                "Measured time from asking for a worker to seeing it ready, by role", {"role"});
    role_moves = &r.AddCounter("tandem_controller_role_moves_total",
                               "Workers a rebalance moved between roles, by how: flip (drained, role changed in "
                               "place) or restart (stopped, a new one started)",
                               {"how"});
    predicted_attainment = &r.AddGauge("tandem_controller_predicted_attainment",
                                       "Share of requests the sizing simulation predicts within both SLOs for the "
                                       "counts it chose at the rate now (--plan-by simulation), 0..1");
    role_moves->With({"flip"});
    role_moves->With({"restart"});
    auto& slo = r.AddGauge("tandem_controller_slo_seconds", "The latency targets the controller plans for", {"slo"});
    slo.With({"ttft"}).Set(o.planner.ttft_slo_s);
    slo.With({"itl"}).Set(o.planner.itl_slo_s);
    // Every series exists from the start, so dashboards show zeros rather than "no data".
    for (auto c : {TrafficClass::kBalanced, TrafficClass::kPromptHeavy, TrafficClass::kGenerationHeavy}) {
      traffic_class->With({TrafficClassName(c)}).Set(c == TrafficClass::kBalanced ? 1 : 0);
    }
    for (std::string_view action : AllPlanActions()) {
      for (std::string_view reason : AllPlanReasons()) decisions->With({std::string(action), std::string(reason)});
    }
    decisions->With({std::string(kActionHold), std::string(kReasonAnomaly)});
  }
};

Controller::Controller(ControllerOptions options, SignalSource* source, Actuator* actuator, DecisionLog* log,
                       metrics::MetricsRegistry* registry)
    : options_(std::move(options)),
      source_(source),
      actuator_(actuator),
      log_(log),
      metrics_(std::make_unique<Metrics>(*registry, options_)),
      anomaly_guard_(GuardOptions(options_)),
      smoother_(options_.smoother),
      classifier_(options_.classifier),
      planner_(options_.planner),
      forecasters_{SeriesForecaster(options_.forecasting), SeriesForecaster(options_.forecasting)} {
  planner_.SetSizer(options_.sizer.get());
}

Controller::~Controller() = default;

void Controller::RestoreDrainedOut() {
  if (guard_ == nullptr) return;
  absl::StatusOr<std::vector<std::string>> restored = guard_->Check(absl::Now());
  if (!restored.ok() || restored->empty()) return;
  DecisionRecord rec;
  rec.unix_s = UnixSeconds();
  rec.actuator = actuator_->name();
  rec.cls = classifier_.current();
  rec.action = "restore";
  rec.reason = "drained_out";
  for (const std::string& id : *restored) rec.detail += (rec.detail.empty() ? "" : ",") + id;
  rec.detail = StrCat("every worker of a role was draining; ended the drain of ", rec.detail);
  rec.result = std::string(kResultOk);
  metrics_->decisions->With({rec.action, rec.reason}).Increment(static_cast<double>(restored->size()));
  if (log_ != nullptr) {
    if (absl::Status s = log_->Append(rec); !s.ok()) GetLogger("controller")->warn("decision log: {}", s.message());
  }
}

Plan Controller::Decide(const Signals& reading, const InstanceCounts& current, double now_s,
                        DecisionRecord& rec) {
  auto logger = GetLogger("controller");
  GuardVerdict verdict;
  if (options_.anomaly_guard) {
    verdict = anomaly_guard_.Judge(reading, current);
  } else {
    verdict.reading = reading;
  }
  for (const std::string& kind : verdict.kinds) metrics_->anomalies->With({kind}).Increment();
  if (!verdict.kinds.empty()) logger->info("anomaly guard: {}", verdict.detail);
  rec.anomalies = verdict.kinds;
  rec.anomaly_detail = verdict.detail;
  const Signals smoothed = AnomalyGuard::PlanningView(smoother_.Update(verdict.reading), reading);
  rec.smoothed = smoothed;
  for (const SignalField& f : SignalMeasurementFields()) {
    const double v = smoothed.*(f.member);
    if (HasData(v)) metrics_->signal->With({f.name}).Set(v);
  }
  TrackReadiness(reading, current, now_s);  // every tick: a held tick still sees workers become ready
  const Classification cls = classifier_.Classify(smoothed, current, now_s);
  if (cls.changed) logger->info("traffic is now {}", TrafficClassName(cls.cls));
  if (HasData(cls.demand.prefill_demand)) metrics_->demand->With({"prefill"}).Set(cls.demand.prefill_demand);
  if (HasData(cls.demand.decode_demand)) metrics_->demand->With({"decode"}).Set(cls.demand.decode_demand);
  Plan plan;
  if (verdict.hold) {
    plan.current = plan.desired = current;
    plan.cls = cls.cls;
    plan.demand = cls.demand;
    plan.action = std::string(kActionHold);
    plan.reason = std::string(kReasonAnomaly);
    plan.detail = verdict.detail;
  } else {
    plan = planner_.Decide(smoothed, cls.cls, current, now_s, ForecastLoads(cls.demand, now_s));
    if (plan.sized) metrics_->predicted_attainment->With().Set(plan.sized->attainment);
  }
  rec.SetPlan(plan);
  for (auto c : {TrafficClass::kBalanced, TrafficClass::kPromptHeavy, TrafficClass::kGenerationHeavy}) {
    metrics_->traffic_class->With({TrafficClassName(c)}).Set(c == cls.cls ? 1 : 0);
  }
  return plan;
}

void Controller::TrackReadiness(const Signals& reading, const InstanceCounts& current, double now_s) {
  for (Role role : {Role::kPrefill, Role::kDecode}) {
    const int r = static_cast<int>(role);
    const bool prefill = role == Role::kPrefill;
    std::optional<Start>& start = starting_[r];
    if (start && (prefill ? current.prefill : current.decode) < start->target) start.reset();  // called off
    if (start && (prefill ? reading.ready.prefill : reading.ready.decode) >= start->target) {
      const double took = now_s - start->since_s;
      ready_time_s_[r] = ready_time_s_[r] ? (*ready_time_s_[r] + took) / 2 : took;
      metrics_->ready_seconds->With({RoleName(role)}).Set(*ready_time_s_[r]);
      start.reset();
    }
  }
}

LoadForecast Controller::ForecastLoads(const DemandEstimate& demand, double now_s) {
  LoadForecast out;
  if (!options_.forecast) return out;
  for (Role role : {Role::kPrefill, Role::kDecode}) {
    const int r = static_cast<int>(role);
    const bool prefill = role == Role::kPrefill;
    const std::string name = RoleName(role);
    SeriesForecaster& f = forecasters_[r];
    f.Observe(now_s, prefill ? demand.prefill_load : demand.decode_load);
    if (!ready_time_s_[r]) continue;  // no measured horizon: no look-ahead
    const std::optional<Forecast> fc = f.Ahead(*ready_time_s_[r]);
    if (!fc) continue;
    (prefill ? out.prefill_load : out.decode_load) = fc->value;
    (prefill ? out.prefill_horizon_s : out.decode_horizon_s) = fc->horizon_s;
    metrics_->forecast_load->With({name}).Set(fc->value);
    for (Predictor p : AllPredictors()) {
      if (HasData(f.Error(p))) metrics_->forecast_error->With({name, PredictorName(p)}).Set(f.Error(p));
      metrics_->forecast_predictor->With({name, PredictorName(p)}).Set(p == fc->predictor ? 1 : 0);
    }
  }
  return out;
}

void Controller::NoteStarts(const Plan& plan, double now_s) {
  for (Role role : {Role::kPrefill, Role::kDecode}) {
    const bool prefill = role == Role::kPrefill;
    const int want = prefill ? plan.desired.prefill : plan.desired.decode;
    const int had = prefill ? plan.current.prefill : plan.current.decode;
    std::optional<Start>& start = starting_[static_cast<int>(role)];
    if (want <= had) continue;
    if (start) {
      start->target = want;  // still timed from the first ask
    } else {
      start = Start{want, now_s};
    }
  }
}

DecisionRecord Controller::Tick(double now_s) {
  auto logger = GetLogger("controller");
  metrics_->ticks->Increment();
  RestoreDrainedOut();
  DecisionRecord rec;
  rec.unix_s = UnixSeconds();
  rec.actuator = actuator_->name();
  rec.dry_run = options_.dry_run;

  absl::StatusOr<InstanceCounts> current = actuator_->Current();
  absl::StatusOr<Signals> reading = source_->Read(now_s);
  if (!current.ok() || !reading.ok()) {
    const absl::Status& why = !current.ok() ? current.status() : reading.status();
    (!current.ok() ? metrics_->actuator_errors : metrics_->source_errors)->Increment();
    logger->warn("controller tick: {}", why.message());
    rec.action = std::string(kActionHold);
    rec.reason = std::string(kReasonNoData);
    rec.cls = classifier_.current();
    rec.result = std::string(why.message());
    rec.smoothed = smoother_.smoothed();
    if (current.ok()) rec.current = rec.desired = *current;
    std::lock_guard<std::mutex> lock(mu_);
    last_ = rec;
    return rec;
  }
  rec.current = *current;
  metrics_->actual->With({"prefill"}).Set(current->prefill);
  metrics_->actual->With({"decode"}).Set(current->decode);
  rec.raw = *reading;
  const Plan plan = Decide(*reading, *current, now_s, rec);
  metrics_->desired->With({"prefill"}).Set(plan.desired.prefill);
  metrics_->desired->With({"decode"}).Set(plan.desired.decode);
  metrics_->decisions->With({plan.action, plan.reason}).Increment();

  if (!plan.changes()) {
    rec.result = std::string(kResultSkipped);
  } else if (options_.dry_run) {
    rec.result = std::string(kResultSkipped);
    logger->info("dry run: would {} to {} prefill + {} decode ({}: {})", plan.action, plan.desired.prefill,
                 plan.desired.decode, plan.reason, plan.detail);
  } else {
    logger->info("{}: {} prefill + {} decode → {} + {} ({}: {})", plan.action, current->prefill, current->decode,
                 plan.desired.prefill, plan.desired.decode, plan.reason, plan.detail);
    const absl::Status s = actuator_->Apply(plan.desired);
    NoteActuation(rec);
    if (s.ok()) {
      rec.result = std::string(kResultOk);
      NoteStarts(plan, now_s);
    } else {
      metrics_->actuator_errors->Increment();
      rec.result = std::string(s.message());
      logger->error("actuator {}: {}", actuator_->name(), s.message());
    }
  }
  // Holds are logged too (the trail shows what the controller saw when it did nothing), but
  // only when something differs from the previous hold, so a quiet cluster writes little.
  bool write = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (plan.action == kActionHold && last_.action == kActionHold && last_.reason == rec.reason &&
        last_.cls == rec.cls && last_.current == rec.current && rec.anomalies.empty()) {
      write = false;
    }
    last_ = rec;
  }
  if (log_ != nullptr && write) {
    if (absl::Status s = log_->Append(rec); !s.ok()) logger->warn("decision log: {}", s.message());
  }
  return rec;
}

void Controller::NoteActuation(DecisionRecord& rec) {
  ActuationReport report = actuator_->TakeReport();
  if (report.flips > 0) metrics_->role_moves->With({"flip"}).Increment(report.flips);
  if (report.restarts > 0) metrics_->role_moves->With({"restart"}).Increment(report.restarts);
  for (const std::string& note : report.notes) {
    if (!rec.actuation.empty()) rec.actuation += "; ";
    rec.actuation += note;
  }
}

void Controller::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  bool acting = true;
  while (!stop_) {
    lock.unlock();
    const bool act = !options_.may_act || options_.may_act();
    if (act != acting) {
      GetLogger("controller")->info(act ? "leading: deciding and acting from now on"
                                        : "standing by: another replica leads");
      acting = act;
    }
    if (act) Tick(MonotonicSeconds());
    lock.lock();
    cv_.wait_for(lock, std::chrono::duration<double>(options_.interval_s), [this] { return stop_; });
  }
}

void Controller::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stop_ = true;
  cv_.notify_all();
}

DecisionRecord Controller::last() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_;
}

}  // namespace tandem::controller
