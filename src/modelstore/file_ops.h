// POSIX file helpers for the model store: errno → absl::Status with the path in the message,
// an fsync'ed output file, an exclusive lock file, free-space checks. Internal to modelstore.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tandem::modelstore_internal {

// "<what> <path>: <strerror>", with a code that says what kind of failure it was:
// PermissionDenied (EACCES, EPERM, EROFS), ResourceExhausted (ENOSPC, EDQUOT), NotFound
// (ENOENT), Internal otherwise.
absl::Status FileError(int err, std::string_view what, std::string_view path);

// Bytes available to an unprivileged writer in the file system holding `dir`.
absl::StatusOr<uint64_t> FreeBytes(const std::string& dir);

// ResourceExhausted naming `dir`, `needed` and what is free when less than `needed` is free.
// Succeeds when the free space cannot be determined (the writes will tell).
absl::Status CheckFreeSpace(const std::string& dir, uint64_t needed, std::string_view purpose);

// Lower-case hex SHA-256 of a whole file, read in pieces.
absl::StatusOr<std::string> Sha256OfFile(const std::string& path);

// fsync of a directory, so a rename inside it survives a crash.
absl::Status SyncDirectory(const std::string& dir);

// A file being written: created (or truncated) by Create, every byte written or an error,
// then SyncAndClose. Closed without sync on destruction. Move-only.
class OutputFile {
 public:
  static absl::StatusOr<OutputFile> Create(const std::string& path);
  OutputFile(OutputFile&& other) noexcept;
  OutputFile& operator=(OutputFile&&) = delete;
  ~OutputFile();

  absl::Status Write(const void* data, size_t size);
  absl::Status SyncAndClose();

 private:
  OutputFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;
};

// An exclusive flock(2) on a lock file, held until destruction. flock locks belong to the open
// file description, so two threads of one process exclude each other as two processes do.
// Move-only.
class FileLock {
 public:
  // Creates `path` if needed and blocks until the lock is held. `on_wait` (if set) is called
  // once before blocking when someone else holds the lock.
  static absl::StatusOr<FileLock> Acquire(const std::string& path,
                                          const std::function<void()>& on_wait = nullptr);
  FileLock(FileLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  FileLock& operator=(FileLock&&) = delete;
  ~FileLock();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace tandem::modelstore_internal
