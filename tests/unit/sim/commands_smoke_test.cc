// `tandem profile` and `tandem plan` through the binary: a quick profile of the tiny test
// model, a plan from it, and the errors a user gets for bad input. Seconds, not minutes.
#include <algorithm>
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

// --contexts / --decode-contexts replace the default lengths: a profile for longer prompts times
// chunks after that many cached tokens; lengths past the model's context are refused up front.
TEST(ProfileAndPlanCommands, ProfileAtTheContextsAsked) {
  const std::string tandem = StrCat(TANDEM_BINARY_DIR, "/tandem");
  if (!std::filesystem::exists(tandem)) GTEST_SKIP() << "build the tandem target to run this test";
  const std::string profile = StrCat(tandem::testing::TestTempDir(), "/long.json");
  const Command prof = Shell(StrCat(tandem, " profile --quick --threads 1 --model ", tandem::testing::TinyModelPath(),
                                    " --contexts 0,192 --decode-contexts 160 --output ", profile));
  ASSERT_EQ(prof.exit_code, 0) << prof.output;
  EXPECT_THAT(prof.output, HasSubstr("after 192 tokens"));
  EXPECT_THAT(prof.output, HasSubstr("at context 160"));
  const nlohmann::json j = nlohmann::json::parse(std::ifstream(profile));
  int64_t longest_read = 0;
  for (const auto& s : j["workers"][0]["samples"]) longest_read = std::max(longest_read, s["kv_read_tokens"].get<int64_t>());
  EXPECT_GE(longest_read, 192);

  const Command too_long = Shell(StrCat(tandem, " profile --quick --threads 1 --model ", tandem::testing::TinyModelPath(),
                                        " --contexts 0,10000000 --output ", profile));
  EXPECT_NE(too_long.exit_code, 0);
  EXPECT_THAT(too_long.output, HasSubstr("the model's context is"));
  const Command not_a_number = Shell(StrCat(tandem, " profile --contexts 0,x"));
  EXPECT_EQ(not_a_number.exit_code, 2);
  EXPECT_THAT(not_a_number.output, HasSubstr("--contexts: 'x'"));
}

// Every synthetic architecture through the binary: written, described as the engine reads it,
// and run as a chat (its own template and stop tokens); an unknown one is a usage error.
TEST(ModelSynthCommand, EveryArchitectureIsWrittenAndRuns) {
  const std::string tandem = StrCat(TANDEM_BINARY_DIR, "/tandem");
  if (!std::filesystem::exists(tandem)) GTEST_SKIP() << "build the tandem target to run this test";
  for (const std::string arch : {"llama", "llama3", "llama-spm", "qwen2", "deepseek-r1-qwen"}) {
    const std::string path = StrCat(tandem::testing::TestTempDir(), "/synth-", arch, ".gguf");
    const Command synth = Shell(StrCat(tandem, " model synth --arch ", arch, " --out ", path));
    ASSERT_EQ(synth.exit_code, 0) << synth.output;
    const Command info = Shell(StrCat(tandem, " model info --all ", path));
    ASSERT_EQ(info.exit_code, 0) << info.output;
    const bool qwen = arch == "qwen2" || arch == "deepseek-r1-qwen";
    EXPECT_THAT(info.output, HasSubstr(StrCat("model: ", qwen ? "qwen2" : "llama", " ")));
    if (qwen) EXPECT_THAT(info.output, HasSubstr("blk.0.attn_q.bias"));
    EXPECT_THAT(info.output, HasSubstr(arch == "llama-spm" ? "text: SentencePiece tokenizer" : "text: byte-level BPE"));
    EXPECT_THAT(info.output, HasSubstr(arch == "llama3"             ? "chat template llama3"
                                       : arch == "llama-spm"        ? "chat template llama2"
                                       : arch == "deepseek-r1-qwen" ? "chat template deepseek-r1"
                                                                    : "chat template chatml"));
    const Command run = Shell(StrCat(tandem, " generate --model ", path, " --chat --prompt 'Hi there'",
                                     " --max-tokens 8 --ignore-eos --threads 1"));
    EXPECT_EQ(run.exit_code, 0) << arch << ": " << run.output;
  }
  const Command bad = Shell(StrCat(tandem, " model synth --arch gpt-j --out /dev/null"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.output, HasSubstr("unknown architecture 'gpt-j' (known: llama, llama3, qwen2, deepseek-r1-qwen, llama-spm)"));
}

// `tandem model tokenize`: the ids the router would send, one JSON array per text.
TEST(ModelTokenizeCommand, PrintsTheIdsOfEachText) {
  const std::string tandem = StrCat(TANDEM_BINARY_DIR, "/tandem");
  if (!std::filesystem::exists(tandem)) GTEST_SKIP() << "build the tandem target to run this test";
  const std::string model = StrCat(tandem::testing::TestTempDir(), "/tokenize-spm.gguf");
  ASSERT_EQ(Shell(StrCat(tandem, " model synth --arch llama-spm --out ", model)).exit_code, 0);
  // SentencePiece: BOS (1), then "▁the" as one piece; without BOS the same pieces.
  const Command one = Shell(StrCat(tandem, " model tokenize --model ", model, " --text 'the the' --pieces"));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_THAT(one.output, HasSubstr("[\"<s>\"," "\" the\",\" the\"]"));
  EXPECT_EQ(one.output.rfind("[1,", 0), 0u) << one.output;
  const std::string lines = StrCat(tandem::testing::TestTempDir(), "/lines.jsonl");
  std::ofstream(lines) << "\"the\"\n\"</s>\"\n";
  const Command plain = Shell(StrCat(tandem, " model tokenize --no-bos --model ", model, " --lines ", lines));
  const Command special = Shell(StrCat(tandem, " model tokenize --no-bos --special --model ", model, " --lines ", lines));
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  ASSERT_EQ(special.exit_code, 0) << special.output;
  EXPECT_THAT(special.output, HasSubstr("\n[2]\n"));  // "</s>" parsed as EOS only with --special
  EXPECT_THAT(plain.output, ::testing::Not(HasSubstr("\n[2]\n")));
  const Command neither = Shell(StrCat(tandem, " model tokenize --model ", model));
  EXPECT_EQ(neither.exit_code, 2);
  EXPECT_THAT(neither.output, HasSubstr("give one of --text and --lines"));
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
  for (const char* flag : {"--model", "--threads", "--output", "--itl-slo", "--quick", "--transfer-gbps", "--device",
                           "--contexts", "--decode-contexts"}) {
    EXPECT_THAT(profile_help.output, HasSubstr(flag));
  }
}

}  // namespace
}  // namespace tandem::sim
