// `tandem profile` and `tandem plan` through the binary: a quick profile of the tiny test
// model, a plan from it, and the errors a user gets for bad input. Seconds, not minutes.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "testing/shell.h"
#include "testing/tiny_model.h"

namespace tandem::sim {
namespace {

using ::testing::HasSubstr;

using Command = tandem::testing::ShellResult;
using tandem::testing::Shell;

TEST(ProfileAndPlanCommands, QuickProfileThenAPlanFromIt) {
  const std::string tandem = StrCat(TANDEM_BINARY_DIR, "/tandem");
  if (!std::filesystem::exists(tandem)) GTEST_SKIP() << "build the tandem target to run this test";
  const std::string profile = StrCat(tandem::testing::TestTempDir(), "/profile.json");
  const Command prof = Shell(StrCat(tandem, " profile --quick --threads 1 --model ", tandem::testing::TinyModelPath(),
                                    " --itl-slo 1000 --output ", profile));
  ASSERT_EQ(prof.exit_code, 0) << prof.output;
  EXPECT_THAT(prof.output, HasSubstr("ms/token"));
  EXPECT_THAT(prof.output, HasSubstr("token budget for an ITL SLO of 1000 ms"));
  const nlohmann::json j = nlohmann::json::parse(std::ifstream(profile));
  EXPECT_EQ(j["kind"], "tandem-profile");
  ASSERT_EQ(j["workers"].size(), 1u);
  EXPECT_EQ(j["workers"][0]["threads"], 1);
  EXPECT_GT(j["workers"][0]["samples"].size(), 10u);  // prefill, decode and mixed iterations
  EXPECT_GT(j["model"]["kv_bytes_per_token"].get<int64_t>(), 0);

  const std::string result = StrCat(tandem::testing::TestTempDir(), "/plan.json");
  const Command plan = Shell(StrCat(tandem, " plan --profile ", profile,
                                    " --workload fixed --input-len 32 --output-len 8 --num-prompts 60 --min-duration 0",
                                    " --goodput ttft:2000 tpot:500 --max-workers 2 --cpus 2 --search-iters 3",
                                    " --token-budget auto --request-rate 2 --no-progress --result-file ", result));
  ASSERT_EQ(plan.exit_code, 0) << plan.output;
  EXPECT_THAT(plan.output, HasSubstr("colocated"));
  EXPECT_THAT(plan.output, HasSubstr("1p1d"));
  EXPECT_THAT(plan.output, HasSubstr("Recommended:"));
  const nlohmann::json pj = nlohmann::json::parse(std::ifstream(result));
  ASSERT_EQ(pj["rows"].size(), 2u);
  EXPECT_TRUE(pj["rows"][0]["goodput"].is_number()) << pj.dump();
  EXPECT_EQ(pj["rows"][0]["summary"]["sent"], 60);
}

TEST(ProfileAndPlanCommands, UsageErrorsAndHelp) {
  const std::string tandem = StrCat(TANDEM_BINARY_DIR, "/tandem");
  if (!std::filesystem::exists(tandem)) GTEST_SKIP() << "build the tandem target to run this test";
  const Command no_profile = Shell(StrCat(tandem, " plan --ttft-slo 100 --tpot-slo 10"));
  EXPECT_EQ(no_profile.exit_code, 2);
  EXPECT_THAT(no_profile.output, HasSubstr("--profile is required"));
  const Command missing = Shell(StrCat(tandem, " plan --profile /nonexistent.json --ttft-slo 100 --tpot-slo 10"));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.output, HasSubstr("cannot read profile"));
  const std::string junk = StrCat(tandem::testing::TestTempDir(), "/junk.json");
  std::ofstream(junk) << "{\"kind\": \"tandem-profile\", \"model\": {}}";
  const Command bad = Shell(StrCat(tandem, " plan --profile ", junk, " --ttft-slo 100 --tpot-slo 10"));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.output, HasSubstr("malformed profile"));
  const Command no_slo = Shell(StrCat(tandem, " plan --profile ", junk));
  EXPECT_EQ(no_slo.exit_code, 2);
  EXPECT_THAT(no_slo.output, HasSubstr("--ttft-slo"));
  const Command bad_threads = Shell(StrCat(tandem, " profile --threads 0"));
  EXPECT_EQ(bad_threads.exit_code, 2);

  const Command plan_help = Shell(StrCat(tandem, " plan --help"));
  EXPECT_EQ(plan_help.exit_code, 0);
  for (const char* flag : {"--profile", "--workload", "--ttft-slo", "--tpot-slo", "--max-workers", "--cpus",
                           "--configs", "--token-budget", "--requests-from", "--schedule", "--trace",
                           "--attainment", "--request-rate", "--result-file"}) {
    EXPECT_THAT(plan_help.output, HasSubstr(flag));
  }
  const Command profile_help = Shell(StrCat(tandem, " profile --help"));
  EXPECT_EQ(profile_help.exit_code, 0);
  for (const char* flag : {"--model", "--threads", "--output", "--itl-slo", "--quick", "--transfer-gbps", "--device"}) {
    EXPECT_THAT(profile_help.output, HasSubstr(flag));
  }
}

}  // namespace
}  // namespace tandem::sim
