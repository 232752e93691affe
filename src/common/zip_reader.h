// Reads entries out of a ZIP archive (a Python wheel): stored or deflated, CRC-checked.
// ZIP64 archives are refused with a clear error. Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/mapped_file.h"

namespace tandem {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 stored, 8 deflate
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_header_offset = 0;
};

class ZipArchive {
 public:
  static absl::StatusOr<std::unique_ptr<ZipArchive>> Open(const std::string& path);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* Find(const std::string& name) const;

  // Streams the entry's uncompressed bytes to `sink` in pieces. `progress(done, total)` is
  // called after each piece when set. The CRC-32 is checked at the end.
  using Sink = std::function<absl::Status(const uint8_t*, size_t)>;
  using Progress = std::function<void(uint64_t, uint64_t)>;
  absl::Status Extract(const ZipEntry& entry, const Sink& sink,
                       const Progress& progress = nullptr) const;

 private:
  explicit ZipArchive(std::unique_ptr<MappedFile> file) : file_(std::move(file)) {}
  absl::Status ReadCentralDirectory();

  std::unique_ptr<MappedFile> file_;
  std::vector<ZipEntry> entries_;
};

}  // namespace tandem
