// Where the router, workers and controller find the cluster token, and what they refuse.
#include "cli/cluster_token.h"

#include <cstdlib>
#include <fstream>

#include "common/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/tiny_model.h"

namespace tandem::cli {
namespace {

using ::testing::HasSubstr;

class ClusterTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv(kClusterTokenEnv);
    ::unsetenv(kClusterTokenFileEnv);
  }
  void TearDown() override { SetUp(); }
  static std::string WriteFile(const std::string& name, const std::string& text) {
    const std::string path = StrCat(tandem::testing::TestTempDir(), "/", name);
    std::ofstream(path) << text;
    return path;
  }
};

TEST_F(ClusterTokenTest, NoTokenAnywhereIsRefusedWithTheWaysToGiveOne) {
  ClusterTokenFlags f;
  EXPECT_FALSE(f.Given());
  auto t = f.Resolve();
  ASSERT_EQ(t.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(t.status().message(), HasSubstr("--cluster-token-file"));
  EXPECT_THAT(t.status().message(), HasSubstr(kClusterTokenEnv));
  f.insecure = true;
  ASSERT_TRUE(f.Resolve().ok());
  EXPECT_EQ(*f.Resolve(), "");  // the check is off
}

TEST_F(ClusterTokenTest, FileFlagThenFileVariableThenValueVariable) {
  const std::string a = WriteFile("a", "token-from-the-flag-file\n");
  const std::string b = WriteFile("b", "token-from-the-env-file");
  ::setenv(kClusterTokenEnv, "token-from-the-value-variable", 1);
  ::setenv(kClusterTokenFileEnv, b.c_str(), 1);
  ClusterTokenFlags f;
  f.file = a;
  EXPECT_TRUE(f.Given());
  EXPECT_EQ(*f.Resolve(), "token-from-the-flag-file");  // the trailing newline is not part of it
  f.file.clear();
  EXPECT_EQ(*f.Resolve(), "token-from-the-env-file");
  ::unsetenv(kClusterTokenFileEnv);
  EXPECT_EQ(*f.Resolve(), "token-from-the-value-variable");
}

TEST_F(ClusterTokenTest, ShortTokensAndUnreadableFilesAreErrors) {
  ClusterTokenFlags f;
  f.file = WriteFile("short", "abc");
  EXPECT_THAT(f.Resolve().status().message(), HasSubstr("at least 16"));
  f.file = StrCat(tandem::testing::TestTempDir(), "/does-not-exist");
  EXPECT_EQ(f.Resolve().status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tandem::cli
