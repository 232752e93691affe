#include "controller/core/anomaly_guard.h"

#include <cmath>
#include <random>
#include <string>

#include "controller/core/planner.h"
#include "controller/core/smoother.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr InstanceCounts k1P1D{1, 1};

// A reading at time t (5 s windows) with `rate` requests/s of 200 prompt tokens and 50 output
// tokens each, TTFT p99 `ttft` s.
Signals Reading(double t, double rate, double ttft = 0.4) {
  Signals s;
  s.time_s = t;
  s.window_s = 5;
  s.arrival_rate = rate;
  s.prompt_tokens_mean = 200;
  s.prompt_token_rate = 200 * rate;
  s.output_tokens_mean = 50;
  s.ttft_p50 = ttft / 2;
  s.ttft_p90 = ttft * 0.8;
  s.ttft_p99 = ttft;
  s.itl_p50 = 0.02;
  s.itl_p99 = 0.05;
  s.tpot_p90 = 0.01;
  s.tpot_p99 = 0.02;
  s.queue_p99 = 0;
  s.inflight_requests = rate * 2;
  s.ready = k1P1D;
  return s;
}

// Feeds `n` readings of steady traffic from time `t`, 5 s apart; returns the next time.
double Steady(AnomalyGuard& guard, double t, int n, double rate = 2) {
  for (int i = 0; i < n; ++i, t += 5) {
    const GuardVerdict v = guard.Judge(Reading(t, rate), k1P1D);
    EXPECT_THAT(v.kinds, IsEmpty()) << "t=" << t << " " << v.detail;
  }
  return t;
}

TEST(AnomalyGuardTest, ASingleBurstIsDroppedAndTheReadingAfterItIsNot) {
  AnomalyGuard guard;
  double t = Steady(guard, 0, 10);
  GuardVerdict v = guard.Judge(Reading(t, 20, 6.0), k1P1D);
  EXPECT_THAT(v.kinds, ElementsAre("spike"));
  EXPECT_FALSE(v.hold);
  EXPECT_TRUE(std::isnan(v.reading.arrival_rate));
  EXPECT_TRUE(std::isnan(v.reading.prompt_token_rate));  // goes with the arrival rate
  EXPECT_TRUE(std::isnan(v.reading.ttft_p99));
  EXPECT_DOUBLE_EQ(v.reading.output_tokens_mean, 50);    // the fields that were normal stay
  EXPECT_THAT(v.detail, HasSubstr("arrival_rate 20 against a median of 2"));
  v = guard.Judge(Reading(t + 5, 2), k1P1D);
  EXPECT_THAT(v.kinds, IsEmpty());
  EXPECT_DOUBLE_EQ(v.reading.arrival_rate, 2);
}

// The quantiles sizing by simulation judges (p90 TTFT, p90/p99 TPOT) are guarded like the p99s:
// the requests of a burst finish slowly for a reading or two while the arrival rate is back to
// normal, and those readings must not add a worker.
TEST(AnomalyGuardTest, ATpotSpikeAfterABurstIsDropped) {
  AnomalyGuard guard;
  const double t = Steady(guard, 0, 10);
  Signals slow = Reading(t, 2);
  slow.tpot_p90 = 0.5;
  slow.tpot_p99 = 0.6;
  const GuardVerdict v = guard.Judge(slow, k1P1D);
  EXPECT_THAT(v.kinds, ElementsAre("spike"));
  EXPECT_TRUE(std::isnan(v.reading.tpot_p90));
  EXPECT_TRUE(std::isnan(v.reading.tpot_p99));
  EXPECT_DOUBLE_EQ(v.reading.arrival_rate, 2);
  EXPECT_THAT(v.detail, HasSubstr("tpot_p90"));
}

TEST(AnomalyGuardTest, AShiftThatLastsIsANewLevelAfterTheConfirmingReadings) {
  AnomalyGuard guard({.confirm_readings = 3});
  double t = Steady(guard, 0, 10);
  for (int i = 0; i < 2; ++i, t += 5) {
    EXPECT_TRUE(std::isnan(guard.Judge(Reading(t, 8), k1P1D).reading.arrival_rate)) << i;
  }
  EXPECT_DOUBLE_EQ(guard.Judge(Reading(t, 8), k1P1D).reading.arrival_rate, 8);  // the third
  t += 5;
  // From now on 8 is normal (judged again after 8 readings at the new level), and 0 would be
  // the outlier.
  Steady(guard, t, 6, 8);
  EXPECT_THAT(guard.Judge(Reading(t + 30, 0), k1P1D).kinds, ElementsAre("spike"));
}

TEST(AnomalyGuardTest, AnOutlierOnTheOtherSideStartsTheCountAgain) {
  AnomalyGuard guard({.confirm_readings = 2});
  double t = Steady(guard, 0, 10, 10);
  EXPECT_TRUE(std::isnan(guard.Judge(Reading(t, 40), k1P1D).reading.arrival_rate));
  EXPECT_TRUE(std::isnan(guard.Judge(Reading(t + 5, 0), k1P1D).reading.arrival_rate));
  EXPECT_DOUBLE_EQ(guard.Judge(Reading(t + 10, 0), k1P1D).reading.arrival_rate, 0);
}

TEST(AnomalyGuardTest, PoissonNoiseOfSparseTrafficIsNotASpike) {
  // 0.2 requests/s in 5 s windows: counts 0, 1, 2 or 3 are ordinary. Median 0 and MAD 0 would
  // call each request a spike without the counting-noise floor.
  AnomalyGuard guard;
  std::mt19937 rng(7);
  std::poisson_distribution<int> arrivals(0.2 * 5);
  int spikes = 0;
  for (int i = 0; i < 400; ++i) {
    const GuardVerdict v = guard.Judge(Reading(5.0 * i, arrivals(rng) / 5.0), k1P1D);
    spikes += static_cast<int>(!v.kinds.empty());
  }
  EXPECT_EQ(spikes, 0);
}

TEST(AnomalyGuardTest, NoisyButSteadyTrafficIsRarelyFlagged) {
  // 4 requests/s (Poisson counts) and a log-normal TTFT p99 around 0.5 s.
  AnomalyGuard guard;
  std::mt19937 rng(11);
  std::poisson_distribution<int> arrivals(4 * 5);
  std::lognormal_distribution<double> ttft(std::log(0.5), 0.25);
  int spikes = 0;
  for (int i = 0; i < 1000; ++i) {
    const GuardVerdict v = guard.Judge(Reading(5.0 * i, arrivals(rng) / 5.0, ttft(rng)), k1P1D);
    spikes += static_cast<int>(!v.kinds.empty());
  }
  EXPECT_LE(spikes, 5);  // under 0.5% of the readings
}

TEST(AnomalyGuardTest, TrafficStartingAfterAnIdleStretchCountsOnceItLasts) {
  AnomalyGuard guard;
  double t = Steady(guard, 0, 10, 0);
  EXPECT_TRUE(std::isnan(guard.Judge(Reading(t, 6), k1P1D).reading.arrival_rate));       // a burst?
  EXPECT_TRUE(std::isnan(guard.Judge(Reading(t + 5, 6), k1P1D).reading.arrival_rate));
  EXPECT_DOUBLE_EQ(guard.Judge(Reading(t + 10, 6), k1P1D).reading.arrival_rate, 6);  // no: traffic
}

TEST(AnomalyGuardTest, AReadingAfterAGapHoldsOneTick) {
  AnomalyGuard guard({.interval_s = 5});
  double t = Steady(guard, 0, 6);
  GuardVerdict v = guard.Judge(Reading(t + 60, 9), k1P1D);  // a minute without readings
  EXPECT_TRUE(v.hold);
  EXPECT_THAT(v.kinds, ElementsAre("gap"));
  EXPECT_DOUBLE_EQ(v.reading.arrival_rate, 9);  // taken, not judged: its level is unknown
  v = guard.Judge(Reading(t + 65, 2), k1P1D);
  EXPECT_FALSE(v.hold);
}

TEST(AnomalyGuardTest, LatencyTakenInDuringGapsIsJudgedOnItsOwnScaleAfterwards) {
  AnomalyGuard guard({.interval_s = 5});
  double t = 0;
  guard.Judge(Reading(t, 2, 0.4), k1P1D);
  for (int i = 0; i < 12; ++i) {  // every reading after the first follows a gap
    t += 20;
    EXPECT_THAT(guard.Judge(Reading(t, 2, 0.4), k1P1D).kinds, ElementsAre("gap"));
  }
  const GuardVerdict v = guard.Judge(Reading(t + 5, 2, 0.4), k1P1D);  // back to the interval
  EXPECT_THAT(v.kinds, IsEmpty()) << v.detail;
  EXPECT_DOUBLE_EQ(v.reading.ttft_p99, 0.4);
}

TEST(AnomalyGuardTest, ALostWorkersLatencyIsIgnoredWhileItSettles) {
  AnomalyGuard guard({.settle_s = 30});
  const InstanceCounts wanted{1, 2};
  double t = 0;
  for (int i = 0; i < 10; ++i, t += 5) {
    Signals s = Reading(t, 2);
    s.ready = wanted;
    guard.Judge(s, wanted);
  }
  Signals killed = Reading(t, 2, 9.0);
  killed.ready = {1, 1};
  GuardVerdict v = guard.Judge(killed, wanted);
  EXPECT_THAT(v.kinds, ElementsAre("worker_lost"));
  EXPECT_THAT(v.detail, HasSubstr("decode ready 2 -> 1 while 2 are wanted"));
  EXPECT_TRUE(std::isnan(v.reading.ttft_p99));
  EXPECT_TRUE(std::isnan(v.reading.queue_p99));
  EXPECT_DOUBLE_EQ(v.reading.arrival_rate, 2);  // the load still counts
  for (double dt = 5; dt < 30; dt += 5) {
    Signals s = Reading(t + dt, 2, 7.0);
    s.ready = wanted;
    EXPECT_TRUE(std::isnan(guard.Judge(s, wanted).reading.ttft_p99)) << dt;
  }
  Signals settled = Reading(t + 30, 2, 0.4);
  settled.ready = wanted;
  EXPECT_DOUBLE_EQ(guard.Judge(settled, wanted).reading.ttft_p99, 0.4);
}

TEST(AnomalyGuardTest, AScaleInIsNotAWorkerLost) {
  AnomalyGuard guard;
  Signals s = Reading(0, 2);
  s.ready = {1, 2};
  guard.Judge(s, {1, 2});
  s = Reading(5, 2);
  s.ready = {1, 1};  // the drain the controller asked for has finished
  EXPECT_THAT(guard.Judge(s, {1, 1}).kinds, IsEmpty());
}

TEST(AnomalyGuardTest, AClockThatWentBackStartsOver) {
  AnomalyGuard guard;
  Steady(guard, 1000, 10);
  // A restarted source: time 0 again, and a new level it has never seen.
  const GuardVerdict v = guard.Judge(Reading(0, 30), k1P1D);
  EXPECT_THAT(v.kinds, IsEmpty());
  EXPECT_DOUBLE_EQ(v.reading.arrival_rate, 30);
}

TEST(AnomalyGuardTest, PlanningViewDropsLatencyOnlyWhenTheTrafficHasStopped) {
  Signals smoothed = Reading(0, 2, 5.0);
  Signals raw = Reading(0, 0);
  raw.inflight_requests = 0;
  Signals view = AnomalyGuard::PlanningView(smoothed, raw);
  for (const SignalField& f : AnomalyGuard::LatencyFields()) EXPECT_TRUE(std::isnan(view.*f.member)) << f.name;
  EXPECT_DOUBLE_EQ(view.arrival_rate, 2);
  raw.inflight_requests = 3;  // nothing new, but requests still running: their latency is current
  view = AnomalyGuard::PlanningView(smoothed, raw);
  EXPECT_DOUBLE_EQ(view.ttft_p99, 5.0);
}

// The cases end to end through the smoother and the planner: a quiet stretch and a
// single burst change nothing (and without the guard, the burst would).
int ChangesOverAQuietStretchWithABurst(bool guarded) {
  AnomalyGuard guard;
  SignalSmoother smoother({.half_life_s = 20});
  PlannerConfig pc;
  pc.up_cooldown_s = 0;
  pc.down_cooldown_s = 0;
  Planner planner(pc);
  int changes = 0;
  for (int i = 0; i < 60; ++i) {
    const double t = 5.0 * i;
    // Quiet: 0.5 requests/s; at i = 30 one window of 30 requests/s with 8 s TTFT.
    Signals raw = Reading(t, i == 30 ? 30 : 0.5, i == 30 ? 8.0 : 0.4);
    raw.prefill_tokens_per_busy_second = 400;
    raw.decode_tokens_per_busy_second = 150;
    const Signals& smoothed = smoother.Update(guarded ? guard.Judge(raw, k1P1D).reading : raw);
    const Plan plan = planner.Decide(AnomalyGuard::PlanningView(smoothed, raw), TrafficClass::kBalanced, k1P1D,
                                     t);
    changes += static_cast<int>(plan.changes());
  }
  return changes;
}

TEST(AnomalyGuardTest, AQuietStretchAndABurstCauseNoChange) {
  EXPECT_EQ(ChangesOverAQuietStretchWithABurst(true), 0);
  EXPECT_GT(ChangesOverAQuietStretchWithABurst(false), 0);
}

TEST(AnomalyGuardTest, RejectsOptionsThatCannotWork) {
  EXPECT_FALSE(ValidateAnomalyGuardOptions({.interval_s = 0}).ok());
  EXPECT_FALSE(ValidateAnomalyGuardOptions({.window = 3, .min_history = 4}).ok());
  EXPECT_FALSE(ValidateAnomalyGuardOptions({.confirm_readings = 0}).ok());
  EXPECT_FALSE(ValidateAnomalyGuardOptions({.max_gap_factor = 1}).ok());
  EXPECT_TRUE(ValidateAnomalyGuardOptions({}).ok());
}

}  // namespace
}  // namespace tandem::controller
