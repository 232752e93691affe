#include "modelstore/file_ops.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/sha256.h"
#include "common/strings.h"

namespace tandem::modelstore_internal {

absl::Status FileError(int err, std::string_view what, std::string_view path) {
  const std::string message = StrCat(what, " ", path, ": ", std::strerror(err));
  switch (err) {
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    case ENOENT:
      return absl::NotFoundError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::StatusOr<uint64_t> FreeBytes(const std::string& dir) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return FileError(errno, "cannot statvfs", dir);
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

absl::Status CheckFreeSpace(const std::string& dir, uint64_t needed, std::string_view purpose) {
  absl::StatusOr<uint64_t> free_bytes = FreeBytes(dir);
  if (!free_bytes.ok() || *free_bytes >= needed) return absl::OkStatus();
  return absl::ResourceExhaustedError(StrCat("not enough disk space in ", dir, ": ", purpose,
                                             " needs about ", fmt::format("{:.1f}", needed / 1e6),
                                             " MB, only ", fmt::format("{:.1f}", *free_bytes / 1e6),
                                             " MB free"));
}

absl::StatusOr<std::string> Sha256OfFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FileError(errno, "cannot open", path);
  Sha256 hasher;
  std::vector<char> buffer(1 << 20);
  absl::Status status;
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) status = FileError(errno, "cannot read", path);
    if (n <= 0) break;
    hasher.Update(buffer.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  if (!status.ok()) return status;
  return ToHex(hasher.Finish());
}

absl::Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return FileError(errno, "cannot open directory", dir);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems cannot fsync a directory; that costs durability, not correctness.
  if (rc != 0 && err != EINVAL && err != ENOTSUP) return FileError(err, "cannot fsync", dir);
  return absl::OkStatus();
}

absl::StatusOr<OutputFile> OutputFile::Create(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return FileError(errno, "cannot create", path);
  return OutputFile(path, fd);
}

OutputFile::OutputFile(OutputFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_) {
  other.fd_ = -1;
}

OutputFile::~OutputFile() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status OutputFile::Write(const void* data, size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return FileError(errno, "cannot write", path_);
    }
    if (n == 0) return FileError(ENOSPC, "short write to", path_);
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status OutputFile::SyncAndClose() {
  // Delayed allocation can report a full disk only here, so both results matter.
  if (::fsync(fd_) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    return FileError(err, "cannot fsync", path_);
  }
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) return FileError(errno, "cannot close", path_);
  return absl::OkStatus();
}

absl::StatusOr<FileLock> FileLock::Acquire(const std::string& path,
                                           const std::function<void()>& on_wait) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return FileError(errno, "cannot open lock file", path);
  FileLock lock(fd);
  auto flock_retrying = [fd](int op) {
    int rc;
    do {
      rc = ::flock(fd, op);
    } while (rc != 0 && errno == EINTR);
    return rc;
  };
  if (flock_retrying(LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return FileError(errno, "cannot lock", path);
    if (on_wait) on_wait();
    if (flock_retrying(LOCK_EX) != 0) return FileError(errno, "cannot lock", path);
  }
  return lock;
}

// Closing the last descriptor of the open file description releases the flock.
FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace tandem::modelstore_internal
