// `tandem up`'s launch plan: what it starts, with which settings, and what it never puts on a
// command line.
#include "cli/up_plan.h"

#include <filesystem>
#include <unistd.h>

#include "sim/cost_model.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::cli {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

// The settings a child would parse from `argv` (without the program and subcommand).
template <typename T>
T ChildSettings(std::vector<std::string> argv, size_t skip) {
  argv.erase(argv.begin(), argv.begin() + static_cast<std::ptrdiff_t>(skip));
  T parsed;
  FlagSet flags("child", "");
  parsed.Register(flags);
  absl::Status s = flags.Parse(argv);
  EXPECT_TRUE(s.ok()) << s;
  return parsed;
}

TEST(UpPlanTest, WorkersShareTheCpusAndTheChildrenGetTheSettings) {
  UpFlags up;
  up.prefill = 1;
  up.decode = 2;
  up.worker.engine.kv_cache_mb = 512;
  up.router.local_prefill_threshold = 64;
  up.router.http_port = 0;
  up.worker.ucx_tls = "tcp,self";
  auto plan = PlanUp(up, /*cpus=*/6);
  ASSERT_TRUE(plan.ok()) << plan.status();
  plan->SetModel("/m/model.gguf");
  EXPECT_EQ(plan->threads_per_worker, 2);  // 6 CPUs / 3 workers

  const RouterFlags router = ChildSettings<RouterFlags>(plan->RouterArgv("/bin/tandem"), 2);
  EXPECT_EQ(router.model, "/m/model.gguf");
  EXPECT_EQ(router.http_port, 0);
  EXPECT_EQ(router.grpc_port, 50051);
  EXPECT_EQ(router.local_prefill_threshold, 64);

  const WorkerFlags worker = ChildSettings<WorkerFlags>(plan->WorkerArgs("127.0.0.1:5"), 0);
  EXPECT_EQ(worker.router, "127.0.0.1:5");
  EXPECT_EQ(worker.engine.model, "/m/model.gguf");
  EXPECT_EQ(worker.engine.threads, 2);
  EXPECT_EQ(worker.engine.kv_cache_mb, 512);
  EXPECT_EQ(worker.ucx_tls, "tcp,self");
}

TEST(UpPlanTest, PlanningBySimulationAssumesTheWorkersUpStarts) {
  UpFlags up;
  up.worker.engine.kv_cache_mb = 128;
  auto plan = PlanUp(up, /*cpus=*/4);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->controller.sim_workers.cpus, 4);     // the workers share this machine
  EXPECT_EQ(plan->controller.sim_workers.threads, 2);  // 4 CPUs / 2 workers
  EXPECT_EQ(plan->controller.sim_workers.kv_cache_mb, 128);

  ControllerFlags cf = plan->controller;
  ASSERT_TRUE(cf.Finish().ok());
  EXPECT_EQ(cf.daemon.loop.sizer, nullptr);  // --plan-by capacity, the default
  cf.plan_by = "simulation";
  EXPECT_THAT(std::string(cf.Finish().message()), HasSubstr("needs --profile"));
  cf.plan_by = "simulate";
  EXPECT_THAT(std::string(cf.Finish().message()), HasSubstr("capacity or simulation"));

  sim::Profile profile;
  profile.model.kv_bytes_per_token = 23040;
  profile.workers.push_back(sim::WorkerProfile{.threads = 2, .cost = {.fixed_s = 0.005, .per_token_s = 0.001}});
  const std::string path =
      (std::filesystem::temp_directory_path() / ("up_plan_profile_" + std::to_string(::getpid()) + ".json")).string();
  ASSERT_TRUE(sim::WriteProfile(profile, path).ok());
  cf.plan_by = "simulation";
  cf.profile = path;
  const absl::Status finished = cf.Finish();
  EXPECT_TRUE(finished.ok()) << finished;
  EXPECT_NE(cf.daemon.loop.sizer, nullptr);
  cf.plan_by = "capacity";
  EXPECT_THAT(std::string(cf.Finish().message()), HasSubstr("--profile is for --plan-by simulation"));
  std::filesystem::remove(path);
}

TEST(UpPlanTest, RebalancesGoByCostUnlessTold) {
  UpFlags up;
  auto plan = PlanUp(up, 2);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->rebalance_by, controller::RebalanceBy::kCost);
  up.rebalance_by = "restart";
  plan = PlanUp(up, 2);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->rebalance_by, controller::RebalanceBy::kRestart);
  up.role_change = true;  // the older flag: always flip
  plan = PlanUp(up, 2);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->rebalance_by, controller::RebalanceBy::kFlip);
  up.role_change = false;
  up.rebalance_by = "swap";
  plan = PlanUp(up, 2);
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.status().message(), HasSubstr("--rebalance-by: unknown rebalance method 'swap' (cost, flip or restart)"));
}

TEST(UpPlanTest, TheApiKeyTravelsInTheEnvironmentNeverOnTheCommandLine) {
  UpFlags up;
  up.router.api_key = "sk-do-not-leak";
  auto plan = PlanUp(up, 2);
  ASSERT_TRUE(plan.ok());
  for (const std::string& arg : plan->RouterArgv("/bin/tandem")) EXPECT_THAT(arg, Not(HasSubstr("sk-do-not-leak")));
  for (const std::string& arg : plan->WorkerArgs("x:1")) EXPECT_THAT(arg, Not(HasSubstr("sk-do-not-leak")));
  EXPECT_THAT(plan->RouterEnvironment(), Contains("TANDEM_API_KEY=sk-do-not-leak"));
  UpFlags no_key;
  EXPECT_TRUE(PlanUp(no_key, 2)->RouterEnvironment().empty());
}

TEST(UpPlanTest, BudgetDefaultsToOneMoreWorkerThanStartedWithinTheMachine) {
  UpFlags up;  // 1 prefill + 1 decode
  EXPECT_EQ(PlanUp(up, 2)->controller.daemon.loop.planner.max_total_instances, 3);
  EXPECT_EQ(PlanUp(up, 16)->controller.daemon.loop.planner.max_total_instances, 8);
  up.prefill = 4;
  up.decode = 4;
  EXPECT_EQ(PlanUp(up, 16)->controller.daemon.loop.planner.max_total_instances, 9);
  up.controller.daemon.loop.planner.max_total_instances = 5;  // --max-instances wins
  EXPECT_EQ(PlanUp(up, 16)->controller.daemon.loop.planner.max_total_instances, 5);
}

TEST(UpPlanTest, MixedWorkersRunWithoutTheControllerAndSaySo) {
  UpFlags up;
  up.prefill = 0;
  up.decode = 0;
  up.mixed = 2;
  auto plan = PlanUp(up, 4);
  ASSERT_TRUE(plan.ok());
  EXPECT_FALSE(plan->run_controller);
  ASSERT_EQ(plan->notes.size(), 1u);
  EXPECT_THAT(plan->notes[0], HasSubstr("without the controller"));
  const auto argv = plan->MixedWorkerArgv("/bin/tandem", "r:1", 1);
  const WorkerFlags w = ChildSettings<WorkerFlags>(argv, 2);
  EXPECT_EQ(w.role, "mixed");
  EXPECT_EQ(w.worker_id, "mixed-1");
  EXPECT_EQ(w.engine.threads, 2);
}

TEST(UpPlanTest, ImpossibleCountsAreRefused) {
  UpFlags up;
  up.decode = 0;
  EXPECT_FALSE(PlanUp(up, 2).ok());
  up.decode = 1;
  up.prefill = -1;
  EXPECT_FALSE(PlanUp(up, 2).ok());
  up.prefill = 1;
  up.router.http_port = 99999;
  EXPECT_FALSE(PlanUp(up, 2).ok());
  up.router.http_port = 8000;
  for (int routers : {0, 5}) {
    up.routers = routers;
    auto plan = PlanUp(up, 2);
    ASSERT_FALSE(plan.ok());
    EXPECT_NE(plan.status().message().find("--routers"), std::string::npos) << plan.status();
  }
  up.routers = 2;
  auto plan = PlanUp(up, 2);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->routers, 2);
}

TEST(UpPlanTest, UpOffersTheRouterAndWorkerSettingsUnderTheirOwnNames) {
  UpFlags up;
  FlagSet flags("tandem up", "");
  up.Register(flags);
  ASSERT_TRUE(flags.Parse({"--block-size=32", "--queue-timeout=5", "--model=/m.gguf", "--threads=3"}).ok());
  auto plan = PlanUp(up, 2);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const WorkerFlags worker = ChildSettings<WorkerFlags>(plan->WorkerArgs("r:1"), 0);
  EXPECT_EQ(worker.engine.block_size, 32);
  EXPECT_EQ(worker.engine.threads, 3);
  EXPECT_EQ(worker.engine.model, "/m.gguf");
  const RouterFlags router = ChildSettings<RouterFlags>(plan->RouterArgv("/bin/tandem"), 2);
  EXPECT_EQ(router.queue_timeout_s, 5);
  EXPECT_EQ(router.model, "/m.gguf");
  // The worker's own --threads ("0 = one per CPU") is not offered: up's divides the CPUs.
  EXPECT_THAT(flags.Help(), HasSubstr("the CPUs divided among the workers"));
  EXPECT_FALSE(flags.Parse({"--bind=0.0.0.0"}).ok()) << "the router's bind address is not up's to set";
}

// Nothing listens beyond loopback unless asked; --listen opens the router's public API only (not
// its internal port), and says so when there is no API key.
TEST(UpPlanTest, ListenOpensOnlyTheRouterAndWarnsWithoutAnApiKey) {
  UpFlags up;
  FlagSet flags("up", "");
  up.Register(flags);
  auto plan = PlanUp(up, 2);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(ChildSettings<RouterFlags>(plan->RouterArgv("/bin/tandem"), 2).bind, "127.0.0.1");
  EXPECT_EQ(ChildSettings<WorkerFlags>(plan->WorkerArgs("r:1"), 0).bind, "127.0.0.1");
  EXPECT_TRUE(plan->notes.empty());
  ASSERT_TRUE(flags.Parse({"--listen=0.0.0.0"}).ok());
  plan = PlanUp(up, 2);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const RouterFlags router = ChildSettings<RouterFlags>(plan->RouterArgv("/bin/tandem"), 2);
  EXPECT_EQ(router.bind, "0.0.0.0");
  // The internal plane (registration, admin) does not follow the public API out.
  EXPECT_EQ(router.internal_bind, "127.0.0.1");
  EXPECT_EQ(ChildSettings<WorkerFlags>(plan->WorkerArgs("r:1"), 0).bind, "127.0.0.1");
  ASSERT_EQ(plan->notes.size(), 1u);
  EXPECT_THAT(plan->notes[0], HasSubstr("without an API key"));
}

}  // namespace
}  // namespace tandem::cli
