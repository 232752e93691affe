// The control loop against a scripted signal source and a recording actuator.
#include "controller/loop/controller.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::controller {
namespace {

using ::testing::HasSubstr;

class ScriptedSource final : public SignalSource {
 public:
  std::string name() const override { return "scripted"; }
  absl::StatusOr<Signals> Read(double now_s) override {
    if (fail) return absl::UnavailableError("router did not answer");
    Signals s = next;
    s.time_s = now_s;
    s.window_s = 1;
    return s;
  }
  Signals next;
  bool fail = false;
};

class RecordingActuator final : public Actuator {
 public:
  std::string name() const override { return "recording"; }
  absl::StatusOr<InstanceCounts> Current() override { return counts; }
  absl::Status Apply(const InstanceCounts& target) override {
    applied.push_back(target);
    if (!error.ok()) return error;
    counts = target;
    return absl::OkStatus();
  }
  ActuationReport TakeReport() override { return std::exchange(report, {}); }
  InstanceCounts counts{1, 1};
  ActuationReport report;  // what the next TakeReport returns
  std::vector<InstanceCounts> applied;
  absl::Status error;
};

// Prompt-heavy traffic: 600 prompt tokens/s against 300 tokens per busy second per prefill worker.
Signals PromptHeavy() {
  Signals s;
  s.arrival_rate = 1;
  s.prompt_tokens_mean = 600;
  s.prompt_token_rate = 600;
  s.output_tokens_mean = 4;
  s.ttft_p50 = 0.5;
  s.ttft_p99 = 1;
  s.itl_p50 = 0.02;
  s.itl_p99 = 0.05;
  s.queue_p99 = 0;
  s.kv_utilization = 0.1;
  s.queued_prefill_tokens = 1000;
  s.inflight_requests = 3;
  s.prefill_tokens_per_busy_second = 300;
  s.decode_tokens_per_busy_second = 200;
  s.prefill_busy_fraction = 1;
  s.decode_busy_fraction = 0.05;
  s.decode_iteration_mean_s = 0.02;
  s.ready = {1, 1};
  return s;
}

ControllerOptions Options() {
  ControllerOptions o;
  o.planner.max_total_instances = 3;
  o.planner.up_cooldown_s = 5;
  o.planner.down_cooldown_s = 10;
  o.smoother.half_life_s = 0;  // take readings as they are
  o.classifier.min_dwell_s = 0;
  return o;
}

std::string TempPath() {
  char tmpl[] = "/tmp/tandem-decisions-XXXXXX";
  const int fd = mkstemp(tmpl);
  close(fd);
  return tmpl;
}

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(ControllerLoopTest, ScalesPrefillUpForPromptHeavyTrafficAndLogsWhy) {
  ScriptedSource source;
  source.next = PromptHeavy();
  RecordingActuator actuator;
  const std::string path = TempPath();
  auto log = DecisionLog::Open(path);
  ASSERT_TRUE(log.ok()) << log.status();
  metrics::MetricsRegistry registry;
  Controller c(Options(), &source, &actuator, log->get(), &registry);

  DecisionRecord r = c.Tick(100);
  EXPECT_EQ(r.action, "scale_up");
  EXPECT_EQ(r.reason, "prefill_load");
  EXPECT_EQ(r.desired, (InstanceCounts{2, 1}));
  EXPECT_EQ(r.result, "ok");
  ASSERT_EQ(actuator.applied.size(), 1u);
  EXPECT_EQ(actuator.counts, (InstanceCounts{2, 1}));
  // Same traffic, more capacity now: nothing changes for many ticks.
  source.next.ready = {2, 1};
  source.next.prefill_busy_fraction = 0.5;
  for (int t = 1; t <= 30; ++t) EXPECT_EQ(c.Tick(100 + t).action, "hold") << t;
  EXPECT_EQ(actuator.applied.size(), 1u);

  const std::string page = registry.Render();
  EXPECT_THAT(page, HasSubstr("tandem_controller_desired_instances{role=\"prefill\"} 2\n"));
  EXPECT_THAT(page, HasSubstr("tandem_controller_actual_instances{role=\"prefill\"} 2\n"));
  EXPECT_THAT(page, HasSubstr("tandem_controller_decisions_total{action=\"scale_up\",reason=\"prefill_load\"} 1\n"));
  EXPECT_THAT(page, HasSubstr("tandem_controller_signal{signal=\"prompt_token_rate\"} 600\n"));
  EXPECT_THAT(page, HasSubstr("tandem_controller_slo_seconds{slo=\"ttft\"} 2\n"));

  // The log has the change and (deduplicated) holds; every line parses back with its inputs.
  const auto lines = Lines(path);
  ASSERT_GE(lines.size(), 2u);
  ASSERT_LT(lines.size(), 10u) << "identical holds must not be logged every tick";
  auto first = ParseDecisionRecord(lines[0]);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->action, "scale_up");
  EXPECT_EQ(first->actuator, "recording");
  EXPECT_DOUBLE_EQ(first->smoothed.prompt_token_rate, 600);
  EXPECT_DOUBLE_EQ(first->demand.prefill_capacity, 300);
  std::remove(path.c_str());
}

TEST(ControllerLoopTest, HowTheActuatorMovedWorkersIsLoggedAndCounted) {
  ScriptedSource source;
  source.next = PromptHeavy();
  RecordingActuator actuator;
  actuator.report.flips = 1;
  actuator.report.restarts = 2;
  actuator.report.notes = {"decode-0 decode → prefill by flip", "2 decode → prefill by restart"};
  const std::string path = TempPath();
  auto log = DecisionLog::Open(path);
  ASSERT_TRUE(log.ok()) << log.status();
  metrics::MetricsRegistry registry;
  Controller c(Options(), &source, &actuator, log->get(), &registry);
  EXPECT_THAT(registry.Render(), HasSubstr("tandem_controller_role_moves_total{how=\"flip\"} 0\n"));

  const DecisionRecord r = c.Tick(100);
  ASSERT_EQ(r.result, "ok");
  EXPECT_EQ(r.actuation, "decode-0 decode → prefill by flip; 2 decode → prefill by restart");
  const std::string page = registry.Render();
  EXPECT_THAT(page, HasSubstr("tandem_controller_role_moves_total{how=\"flip\"} 1\n"));
  EXPECT_THAT(page, HasSubstr("tandem_controller_role_moves_total{how=\"restart\"} 2\n"));
  const auto lines = Lines(path);
  ASSERT_FALSE(lines.empty());
  auto logged = ParseDecisionRecord(lines[0]);
  ASSERT_TRUE(logged.ok()) << logged.status();
  EXPECT_EQ(logged->actuation, r.actuation);
  std::remove(path.c_str());
}

TEST(ControllerLoopTest, DryRunDecidesButChangesNothing) {
  ScriptedSource source;
  source.next = PromptHeavy();
  RecordingActuator actuator;
  metrics::MetricsRegistry registry;
  ControllerOptions o = Options();
  o.dry_run = true;
  Controller c(o, &source, &actuator, nullptr, &registry);
  DecisionRecord r = c.Tick(100);
  EXPECT_EQ(r.action, "scale_up");
  EXPECT_EQ(r.result, "skipped");
  EXPECT_TRUE(r.dry_run);
  EXPECT_TRUE(actuator.applied.empty());
  EXPECT_THAT(registry.Render(), HasSubstr("tandem_controller_desired_instances{role=\"prefill\"} 2\n"));
}

TEST(ControllerLoopTest, AStandbyReplicaNeitherDecidesNorActsUntilItLeads) {
  ScriptedSource source;
  source.next = PromptHeavy();
  RecordingActuator actuator;
  metrics::MetricsRegistry registry;
  ControllerOptions o = Options();
  o.interval_s = 0.02;
  std::atomic<bool> leader{false};
  o.may_act = [&leader] { return leader.load(); };
  Controller c(o, &source, &actuator, nullptr, &registry);
  std::thread loop([&c] { c.Run(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // about 15 intervals
  EXPECT_EQ(c.last().action, "") << "no decision while another replica leads";
  const bool acted_as_standby = !actuator.applied.empty();  // the loop only reads it (Current)
  leader = true;
  for (int i = 0; i < 100 && c.last().action.empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  c.Stop();
  loop.join();
  EXPECT_FALSE(acted_as_standby) << "another replica leads";
  ASSERT_FALSE(actuator.applied.empty()) << "the new leader acts";
  EXPECT_EQ(actuator.applied[0], (InstanceCounts{2, 1}));
}

TEST(ControllerLoopTest, SourceAndActuatorErrorsAreCountedAndNothingMoves) {
  ScriptedSource source;
  source.fail = true;
  RecordingActuator actuator;
  metrics::MetricsRegistry registry;
  Controller c(Options(), &source, &actuator, nullptr, &registry);
  DecisionRecord r = c.Tick(100);
  EXPECT_EQ(r.action, "hold");
  EXPECT_THAT(r.result, HasSubstr("router did not answer"));
  EXPECT_TRUE(actuator.applied.empty());
  EXPECT_THAT(registry.Render(), HasSubstr("tandem_controller_source_errors_total 1\n"));

  source.fail = false;
  source.next = PromptHeavy();
  actuator.error = absl::UnavailableError("apiserver said 503");
  r = c.Tick(101);
  EXPECT_EQ(r.action, "scale_up");
  EXPECT_THAT(r.result, HasSubstr("503"));
  EXPECT_EQ(actuator.counts, (InstanceCounts{1, 1}));
  EXPECT_THAT(registry.Render(), HasSubstr("tandem_controller_actuator_errors_total 1\n"));
  // Retried at the next tick once the actuator works again.
  actuator.error = absl::OkStatus();
  r = c.Tick(107);
  EXPECT_EQ(r.result, "ok");
  EXPECT_EQ(actuator.counts, (InstanceCounts{2, 1}));
}

// The case: a decode worker is killed under generation-heavy traffic; its requests fail
// over and TTFT spikes; then the traffic stops. The spike must not buy prefill instances, before
// or after the traffic stopped. Returns the prefill counts the controller asked for.
std::vector<int> PrefillAskedForAcrossAWorkerKill(bool anomaly_guard) {
  ScriptedSource source;
  RecordingActuator actuator;
  actuator.counts = {1, 2};
  metrics::MetricsRegistry registry;
  ControllerOptions o = Options();
  o.interval_s = 1;
  o.anomaly_guard = anomaly_guard;
  o.planner.max_total_instances = 4;
  o.smoother.half_life_s = 10;
  Controller c(o, &source, &actuator, nullptr, &registry);
  Signals s = PromptHeavy();
  s.prompt_token_rate = 100;  // 1 request/s of 100 prompt tokens and 150 output tokens
  s.prompt_tokens_mean = 100;
  s.output_tokens_mean = 150;
  s.ttft_p99 = 0.4;
  s.ready = {1, 2};
  std::vector<int> prefill;
  for (int t = 0; t < 120; ++t) {
    source.next = s;
    if (t >= 40 && t < 44) {  // the kill: one decode worker fewer, requests re-prefilled
      source.next.ready = {1, 1};
      source.next.ttft_p99 = 9;
    }
    if (t >= 46) {  // the traffic stops
      source.next.arrival_rate = source.next.prompt_token_rate = 0;
      source.next.inflight_requests = 0;
      source.next.prompt_tokens_mean = source.next.output_tokens_mean = kNoData;
      source.next.ttft_p50 = source.next.ttft_p99 = source.next.itl_p50 = source.next.itl_p99 = kNoData;
      source.next.queue_p99 = kNoData;
    }
    c.Tick(1000 + t);
    for (const InstanceCounts& a : actuator.applied) prefill.push_back(a.prefill);
    actuator.applied.clear();
  }
  return prefill;
}

TEST(ControllerLoopTest, ALostWorkersLatencySpikeBuysNoPrefillBeforeOrAfterTheTrafficStops) {
  for (int p : PrefillAskedForAcrossAWorkerKill(true)) EXPECT_LE(p, 1);
  // Without the guard the same readings do (so the test above can tell).
  const std::vector<int> unguarded = PrefillAskedForAcrossAWorkerKill(false);
  EXPECT_TRUE(std::any_of(unguarded.begin(), unguarded.end(), [](int p) { return p > 1; }));
}

TEST(ControllerLoopTest, AnomaliesAreCountedLoggedAndAGapHolds) {
  ScriptedSource source;
  source.next = PromptHeavy();
  source.next.ready = {1, 1};
  RecordingActuator actuator;
  actuator.counts = {1, 1};
  metrics::MetricsRegistry registry;
  ControllerOptions o = Options();
  o.interval_s = 1;
  o.planner.max_total_instances = 3;
  o.planner.min_prefill = 1;
  Controller c(o, &source, &actuator, nullptr, &registry);
  source.next.prompt_token_rate = 100;  // needs one prefill worker
  for (int t = 0; t < 20; ++t) c.Tick(t);
  source.next.arrival_rate = 40;  // one window of 40 requests/s
  source.next.prompt_token_rate = 24000;
  DecisionRecord r = c.Tick(20);
  EXPECT_THAT(r.anomalies, ::testing::ElementsAre("spike"));
  EXPECT_THAT(r.anomaly_detail, HasSubstr("arrival_rate 40"));
  EXPECT_EQ(r.action, "hold");
  source.next.arrival_rate = 1;
  source.next.prompt_token_rate = 100;
  r = c.Tick(60);  // 40 s after the previous reading
  EXPECT_EQ(r.action, "hold");
  EXPECT_EQ(r.reason, "anomaly");
  EXPECT_THAT(r.anomalies, ::testing::ElementsAre("gap"));
  const std::string page = registry.Render();
  EXPECT_THAT(page, HasSubstr("tandem_controller_anomalies_total{kind=\"spike\"} 1\n"));
  EXPECT_THAT(page, HasSubstr("tandem_controller_anomalies_total{kind=\"gap\"} 1\n"));
  EXPECT_THAT(page, HasSubstr("tandem_controller_anomalies_total{kind=\"worker_lost\"} 0\n"));
  EXPECT_THAT(page, HasSubstr("tandem_controller_decisions_total{action=\"hold\",reason=\"anomaly\"} 1\n"));
}

// A prefill scale-up whose worker is ready 10 s later, then prompt tokens rising by 2 tok/s per
// second. Returns the time and reason of the first change to 3 prefill workers.
std::pair<int, std::string> ThirdPrefillWorkerDuringARamp(bool forecast, metrics::MetricsRegistry& registry) {
  ScriptedSource source;
  RecordingActuator actuator;
  ControllerOptions o = Options();
  o.interval_s = 1;
  o.forecast = forecast;
  o.planner.max_total_instances = 6;
  Controller c(o, &source, &actuator, nullptr, &registry);
  Signals s = PromptHeavy();
  s.prompt_token_rate = 340;  // against 300 per busy second at 70% busy: 2 prefill workers
  s.ready = {1, 1};
  for (int t = 0; t < 300; ++t) {
    if (t == 10) s.ready = {2, 1};  // the worker asked for at t = 0 is ready
    if (t >= 20) s.prompt_token_rate = 340 + 2 * (t - 20);  // 2 workers hold up to 420
    source.next = s;
    const DecisionRecord r = c.Tick(t);
    if (r.desired.prefill >= 3 && r.result == "ok") return {t, r.reason};
  }
  return {-1, ""};
}

// The start-up time is measured on the tick the worker is seen ready, also when the anomaly
// guard holds that tick (here: the first reading after a 30 s gap).
TEST(ControllerLoopTest, AWorkerSeenReadyOnAHeldTickIsTimedThere) {
  ScriptedSource source;
  RecordingActuator actuator;
  metrics::MetricsRegistry registry;
  ControllerOptions o = Options();
  o.interval_s = 1;
  o.forecast = true;
  o.planner.max_total_instances = 6;
  Controller c(o, &source, &actuator, nullptr, &registry);
  Signals s = PromptHeavy();
  s.prompt_token_rate = 340;  // asks for a second prefill worker at t = 0
  s.ready = {1, 1};
  source.next = s;
  for (int t = 0; t < 10; ++t) c.Tick(t);
  source.next.ready = {2, 1};
  const DecisionRecord held = c.Tick(40);
  EXPECT_EQ(held.action, "hold");
  EXPECT_THAT(held.anomalies, ::testing::ElementsAre("gap"));
  EXPECT_THAT(registry.Render(), HasSubstr("tandem_controller_worker_ready_seconds{role=\"prefill\"} 40\n"));
}

TEST(ControllerLoopTest, AForecastRiseStartsAWorkerByTheMeasuredStartUpTimeEarlier) {
  metrics::MetricsRegistry with_registry, without_registry;
  const auto [with_t, with_reason] = ThirdPrefillWorkerDuringARamp(true, with_registry);
  const auto [without_t, without_reason] = ThirdPrefillWorkerDuringARamp(false, without_registry);
  EXPECT_EQ(without_reason, "prefill_load");
  EXPECT_EQ(without_t, 61);  // 340 + 2 (t - 20) > 420 from t = 61
  EXPECT_EQ(with_reason, "forecast") << with_t;
  // 10 s of start-up at 2 tok/s per second is 20 tok/s sooner: about 10 s earlier.
  EXPECT_GE(without_t - with_t, 7);
  EXPECT_LE(without_t - with_t, 13);
  const std::string page = with_registry.Render();
  EXPECT_THAT(page, HasSubstr("tandem_controller_worker_ready_seconds{role=\"prefill\"} 10\n"));
  EXPECT_THAT(page, HasSubstr("tandem_controller_forecast_predictor{role=\"prefill\",predictor=\"holt\"} 1\n"));
  EXPECT_THAT(page, HasSubstr("tandem_controller_forecast_load{role=\"prefill\"}"));
}

}  // namespace
}  // namespace tandem::controller
