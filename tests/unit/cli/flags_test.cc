// Settings travel once: what a launcher renders for a child (ToArgv) parses back, in the child's
// own command, into exactly the settings the launcher meant.
#include "cli/flags.h"

#include "cli/router_flags.h"
#include "cli/worker_flags.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

template <typename T>
T ParseInto(const std::vector<std::string>& argv) {
  T parsed;
  FlagSet flags("test", "test");
  parsed.Register(flags);
  absl::Status s = flags.Parse(argv);
  EXPECT_TRUE(s.ok()) << s;
  return parsed;
}

TEST(FlagsToArgvTest, DefaultsRenderNothing) {
  EXPECT_THAT(ToArgv(RouterFlags{}), IsEmpty());
  EXPECT_THAT(ToArgv(WorkerFlags{}), IsEmpty());
}

TEST(FlagsToArgvTest, WorkerSettingsRoundTripThroughTheChildsParser) {
  WorkerFlags w;
  w.role = "decode";
  w.router = "127.0.0.1:50051";
  w.transfer_timeout_s = 12.5;
  w.reserve_headroom_blocks = 7;
  w.engine.model = "/models/a model.gguf";  // a space survives: argv is not a shell line
  w.engine.threads = 3;
  w.engine.prefix_cache = false;
  w.engine.block_size = 32;
  const std::vector<std::string> argv = ToArgv(w);
  const WorkerFlags back = ParseInto<WorkerFlags>(argv);
  EXPECT_EQ(back.role, "decode");
  EXPECT_EQ(back.router, "127.0.0.1:50051");
  EXPECT_DOUBLE_EQ(back.transfer_timeout_s, 12.5);
  EXPECT_EQ(back.reserve_headroom_blocks, 7);
  EXPECT_EQ(back.engine.model, "/models/a model.gguf");
  EXPECT_EQ(back.engine.threads, 3);
  EXPECT_FALSE(back.engine.prefix_cache);
  EXPECT_EQ(back.engine.block_size, 32);
  // Only what differs from the defaults travels; a false boolean as --no-<name>.
  EXPECT_THAT(argv, ::testing::Contains("--no-prefix-cache"));
  EXPECT_THAT(argv, ::testing::Not(::testing::Contains(::testing::HasSubstr("--kv-cache-mb"))));
}

TEST(FlagsToArgvTest, FloatsRoundTripExactly) {
  RouterFlags r;
  r.queue_timeout_s = 0.1 + 0.2;  // not representable in a short decimal
  EXPECT_EQ(ParseInto<RouterFlags>(ToArgv(r)).queue_timeout_s, r.queue_timeout_s);
}

TEST(FlagsToArgvTest, RouterOptionsAreValidated) {
  RouterFlags r;
  r.http_port = 70000;
  EXPECT_FALSE(r.ToOptions().ok());
  r = RouterFlags{};
  r.queue_timeout_s = 0;
  EXPECT_FALSE(r.ToOptions().ok());
  r = RouterFlags{};
  ASSERT_TRUE(r.ToOptions().ok());
  EXPECT_EQ(r.ToOptions()->queue_timeout, absl::Seconds(60));
}

TEST(FlagsToArgvTest, WorkerRoleIsChecked) {
  WorkerFlags w;
  w.role = "prefil";
  auto o = w.ToOptions();
  ASSERT_FALSE(o.ok());
  EXPECT_THAT(std::string(o.status().message()), ::testing::HasSubstr("prefill, decode or mixed"));
  w.role = "prefill";
  ASSERT_TRUE(w.ToOptions().ok());
  EXPECT_EQ(w.ToOptions()->role, v1::WORKER_ROLE_PREFILL);
}

TEST(FlagsToArgvTest, HelpDoesNotShowTheApiKeyFromTheEnvironment) {
  ::setenv("TANDEM_API_KEY", "sk-secret-from-env", 1);
  RouterFlags r;
  FlagSet flags("tandem router", "");
  r.Register(flags);
  ASSERT_TRUE(flags.Parse({}).ok());
  EXPECT_THAT(flags.Help(), ::testing::Not(::testing::HasSubstr("sk-secret-from-env")));
  r.ApplyEnvironment();
  EXPECT_EQ(r.api_key, "sk-secret-from-env");
  ::unsetenv("TANDEM_API_KEY");
}

}  // namespace
}  // namespace tandem::cli
