#include "controller/core/role_move.h"

#include "gtest/gtest.h"

namespace tandem::controller {
namespace {

TEST(RoleMoveTest, MethodsParseByTheirFlagNames) {
  for (RebalanceBy by : {RebalanceBy::kCost, RebalanceBy::kFlip, RebalanceBy::kRestart}) {
    auto parsed = ParseRebalanceBy(RebalanceByName(by));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, by);
  }
  auto bad = ParseRebalanceBy("swap");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("cost, flip or restart"), std::string::npos) << bad.status();
}

TEST(RoleMoveTest, AnIdleWorkerDrainsAtOnceABusyOneTakesWhatBusyDrainsOfItsRoleTook) {
  MoveCosts costs;
  EXPECT_EQ(costs.PredictDrain(Role::kDecode, /*busy=*/false), 0.0);
  EXPECT_FALSE(costs.PredictDrain(Role::kDecode, /*busy=*/true).has_value());  // nothing measured
  costs.NoteDrain(Role::kDecode, 12);
  costs.NoteDrain(Role::kDecode, 4);
  EXPECT_EQ(costs.drain_s(Role::kDecode), 8.0);  // each new measurement weighs 1/2
  EXPECT_EQ(costs.PredictDrain(Role::kDecode, true), 8.0);
  EXPECT_EQ(costs.PredictDrain(Role::kDecode, true, /*drained_s=*/3), 5.0);  // 3 s of it are past
  EXPECT_EQ(costs.PredictDrain(Role::kDecode, true, 20), 0.0);               // overdue: any moment
  EXPECT_FALSE(costs.PredictDrain(Role::kPrefill, true).has_value());        // the other role's own
  EXPECT_FALSE(costs.start_s().has_value());
  costs.NoteStart(3);
  costs.NoteStart(1);
  EXPECT_EQ(costs.start_s(), 2.0);
}

TEST(RoleMoveTest, ByCostTheMoveThatServesSoonerWins) {
  // An idle worker flips at once; a new process needs its start-up.
  MoveChoice c = ChooseMove(RebalanceBy::kCost, 0.0, 2.5);
  EXPECT_TRUE(c.flip);
  EXPECT_NE(c.why.find("drain 0.0 s, start-up 2.5 s"), std::string::npos) << c.why;
  // Busy workers of this role took 8 s to drain: a new process serves in 2.5 s.
  c = ChooseMove(RebalanceBy::kCost, 8.0, 2.5);
  EXPECT_FALSE(c.flip);
  EXPECT_EQ(c.flip_s, 8.0);
  EXPECT_EQ(c.restart_s, 2.5);
  EXPECT_NE(c.why.find("restart, ready sooner"), std::string::npos) << c.why;
  // A tie flips: no second process, no model load.
  EXPECT_TRUE(ChooseMove(RebalanceBy::kCost, 2.5, 2.5).flip);
}

TEST(RoleMoveTest, ByCostWithoutBothFiguresItFlipsAndSaysWhy) {
  MoveChoice c = ChooseMove(RebalanceBy::kCost, std::nullopt, 2.5);
  EXPECT_TRUE(c.flip);
  EXPECT_NE(c.why.find("drain not measured yet"), std::string::npos) << c.why;
  c = ChooseMove(RebalanceBy::kCost, 30.0, std::nullopt);
  EXPECT_TRUE(c.flip);
  EXPECT_NE(c.why.find("start-up not measured yet"), std::string::npos) << c.why;
}

TEST(RoleMoveTest, AFixedMethodIgnoresTheCostsButReportsThem) {
  MoveChoice c = ChooseMove(RebalanceBy::kFlip, 30.0, 2.5);
  EXPECT_TRUE(c.flip);
  EXPECT_NE(c.why.find("--rebalance-by flip"), std::string::npos) << c.why;
  EXPECT_NE(c.why.find("drain 30.0 s"), std::string::npos) << c.why;
  c = ChooseMove(RebalanceBy::kRestart, 0.0, 2.5);
  EXPECT_FALSE(c.flip);
  EXPECT_NE(c.why.find("--rebalance-by restart"), std::string::npos) << c.why;
}

}  // namespace
}  // namespace tandem::controller
