#include "controller/core/decision_log.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "controller/core/smoother.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem::controller {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class DecisionLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tandem_decision_log_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<std::string> Lines(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  std::filesystem::path dir_;
};

DecisionRecord SampleRecord() {
  DecisionRecord r;
  r.unix_s = 1714572123.25;
  r.raw.time_s = 100;
  r.raw.window_s = 5;
  r.raw.arrival_rate = 0.5;
  r.raw.prompt_token_rate = 500;
  r.raw.ttft_p99 = kNoData;
  r.raw.ready = {1, 1};
  r.smoothed = r.raw;
  r.smoothed.arrival_rate = 0.45;
  Signals s = r.raw;
  s.output_tokens_mean = 10;
  s.prefill_tokens_per_busy_second = 350;
  s.decode_tokens_per_busy_second = 150;
  Planner planner(PlannerConfig{.max_total_instances = 3});
  r.SetPlan(planner.Decide(s, TrafficClass::kPromptHeavy, {1, 1}, 0));
  r.actuator = "local";
  r.actuation = "prefill-1 prefill → decode by flip, ready sooner: drain 0.0 s, start-up 2.1 s (it is idle)";
  r.dry_run = false;
  r.result = "ok";
  return r;
}

TEST(DecisionLogFormatTest, TimeIsRfc3339UtcWithMilliseconds) {
  EXPECT_EQ(FormatRfc3339Millis(1714572123.25), "2024-05-01T14:02:03.250Z");
  EXPECT_EQ(FormatRfc3339Millis(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339Millis(59.9996), "1970-01-01T00:01:00.000Z");  // rounds, carries
}

TEST(DecisionLogFormatTest, SignalsCarryEveryFieldAndNaNIsNull) {
  Signals s;
  s.time_s = 12;
  s.kv_utilization = 0.25;
  s.ready = {2, 3};
  const nlohmann::json j = SignalsToJson(s);
  for (const SignalField& f : SignalMeasurementFields()) {
    ASSERT_TRUE(j.contains(f.name)) << f.name;
  }
  EXPECT_TRUE(j["ttft_p99"].is_null());
  EXPECT_EQ(j["kv_utilization"], 0.25);
  EXPECT_EQ(j["ready"]["decode"], 3);
  EXPECT_THAT(j.dump(), HasSubstr("\"arrival_rate\":null"));

  absl::StatusOr<Signals> back = SignalsFromJson(j);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_DOUBLE_EQ(back->time_s, 12);
  EXPECT_DOUBLE_EQ(back->kv_utilization, 0.25);
  EXPECT_FALSE(HasData(back->ttft_p99));
  EXPECT_EQ(back->ready, (InstanceCounts{2, 3}));

  EXPECT_FALSE(SignalsFromJson(nlohmann::json{{"ttft_p99", "slow"}}).ok());
  EXPECT_FALSE(SignalsFromJson(nlohmann::json::array()).ok());
}

TEST_F(DecisionLogTest, LinesParseBackWithEveryField) {
  const auto path = dir_ / "decisions.jsonl";
  auto log = DecisionLog::Open(path.string());
  ASSERT_TRUE(log.ok()) << log.status();
  const DecisionRecord record = SampleRecord();
  ASSERT_TRUE((*log)->Append(record).ok());
  DecisionRecord skipped = record;
  skipped.dry_run = true;
  skipped.result = "skipped";
  ASSERT_TRUE((*log)->Append(skipped).ok());

  const std::vector<std::string> lines = Lines(path);
  ASSERT_EQ(lines.size(), 2u);
  const nlohmann::json j = nlohmann::json::parse(lines[0]);
  for (const char* key : {"time", "unix_s", "inputs", "demand", "class", "current", "desired",
                          "action", "reason", "detail", "actuator", "actuation", "dry_run", "result"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["time"], "2024-05-01T14:02:03.250Z");
  EXPECT_EQ(j["class"], "prompt_heavy");
  EXPECT_EQ(j["desired"], (nlohmann::json{{"prefill", 2}, {"decode", 1}}));
  EXPECT_EQ(j["action"], "scale_up");
  EXPECT_EQ(j["reason"], "prefill_load");
  EXPECT_TRUE(j["inputs"]["raw"]["ttft_p99"].is_null());
  EXPECT_EQ(j["inputs"]["smoothed"]["arrival_rate"], 0.45);
  EXPECT_NEAR(j["demand"]["prefill_demand"].get<double>(), 500.0 / 350, 1e-9);
  EXPECT_THAT(lines[0], HasSubstr("\"ttft_p99\":null"));
  EXPECT_THAT(lines[0], Not(HasSubstr("NaN")));

  absl::StatusOr<DecisionRecord> back = ParseDecisionRecord(lines[1]);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->cls, TrafficClass::kPromptHeavy);
  EXPECT_EQ(back->current, (InstanceCounts{1, 1}));
  EXPECT_EQ(back->desired, (InstanceCounts{2, 1}));
  EXPECT_EQ(back->action, record.action);
  EXPECT_EQ(back->reason, record.reason);
  EXPECT_EQ(back->detail, record.detail);
  EXPECT_EQ(back->actuator, "local");
  EXPECT_EQ(back->actuation, record.actuation);
  EXPECT_TRUE(back->dry_run);
  EXPECT_EQ(back->result, "skipped");
  EXPECT_DOUBLE_EQ(back->unix_s, record.unix_s);
  EXPECT_DOUBLE_EQ(back->smoothed.arrival_rate, 0.45);
  EXPECT_FALSE(HasData(back->raw.ttft_p99));
  EXPECT_DOUBLE_EQ(back->demand.prefill_load, 500);
}

TEST_F(DecisionLogTest, AppendsToAnExistingFile) {
  const auto path = dir_ / "decisions.jsonl";
  {
    std::ofstream(path) << "{\"earlier\":true}\n";
  }
  {
    auto log = DecisionLog::Open(path.string());
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->Append(SampleRecord()).ok());
  }
  auto again = DecisionLog::Open(path.string());
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE((*again)->Append(SampleRecord()).ok());
  const auto lines = Lines(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "{\"earlier\":true}");
  EXPECT_TRUE(ParseDecisionRecord(lines[2]).ok());
}

TEST_F(DecisionLogTest, ConcurrentWritersProduceWholeLines) {
  const auto path = dir_ / "decisions.jsonl";
  // Two logs on one file stand for two processes; four threads each.
  auto a = DecisionLog::Open(path.string());
  auto b = DecisionLog::Open(path.string());
  ASSERT_TRUE(a.ok() && b.ok());
  constexpr int kThreads = 8, kPerThread = 100;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      DecisionLog& log = t % 2 == 0 ? **a : **b;
      DecisionRecord r = SampleRecord();
      r.actuator = "writer-" + std::to_string(t);
      r.detail = std::string(8000 + t, 'x');  // longer than a pipe buffer's atomic write
      for (int i = 0; i < kPerThread; ++i) {
        r.unix_s = i;
        EXPECT_TRUE(log.Append(r).ok());
      }
    });
  }
  for (auto& th : threads) th.join();

  const auto lines = Lines(path);
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kPerThread));
  std::vector<int> per_writer(kThreads, 0);
  for (const std::string& line : lines) {
    absl::StatusOr<DecisionRecord> r = ParseDecisionRecord(line);
    ASSERT_TRUE(r.ok()) << r.status();
    const int t = std::stoi(r->actuator.substr(7));
    EXPECT_EQ(r->detail.size(), static_cast<size_t>(8000 + t));
    ++per_writer[t];
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(per_writer[t], kPerThread) << "writer " << t;
}

TEST_F(DecisionLogTest, ErrorTextWithInvalidUtf8IsStillLogged) {
  const auto path = dir_ / "decisions.jsonl";
  auto log = DecisionLog::Open(path.string());
  ASSERT_TRUE(log.ok());
  DecisionRecord r = SampleRecord();
  r.result = "PATCH failed: \xff\xfe garbage";
  ASSERT_TRUE((*log)->Append(r).ok());
  const auto lines = Lines(path);
  ASSERT_EQ(lines.size(), 1u);
  absl::StatusOr<DecisionRecord> back = ParseDecisionRecord(lines[0]);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_THAT(back->result, HasSubstr("PATCH failed"));
}

TEST_F(DecisionLogTest, OpenFailsClearlyForABadPath) {
  auto log = DecisionLog::Open((dir_ / "missing-dir" / "x.jsonl").string());
  ASSERT_FALSE(log.ok());
  EXPECT_THAT(std::string(log.status().message()), HasSubstr("missing-dir"));
  EXPECT_FALSE(DecisionLog::Open("").ok());
}

TEST(DecisionLogParseTest, RejectsLinesThatAreNotRecords) {
  EXPECT_FALSE(ParseDecisionRecord("not json").ok());
  EXPECT_FALSE(ParseDecisionRecord("[1,2]").ok());
  EXPECT_FALSE(ParseDecisionRecord("{\"time\":\"x\"}").ok());
  nlohmann::json j = DecisionRecordToJson(SampleRecord());
  j["class"] = "mixed";
  EXPECT_FALSE(ParseDecisionRecord(j.dump()).ok());
}

}  // namespace
}  // namespace tandem::controller
