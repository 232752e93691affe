// The control loop against a scripted signal source and a recording actuator.
#include "controller/loop/controller.h"

#include <unistd.h>

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
  InstanceCounts counts{1, 1};
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

}  // namespace
}  // namespace tandem::controller
