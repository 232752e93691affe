#include "common/zip_reader.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "common/strings.h"
#include "common/status_macros.h"

namespace tandem {
namespace {

uint16_t Le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t Le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

constexpr uint32_t kEocdSignature = 0x06054b50;
constexpr uint32_t kCentralSignature = 0x02014b50;
constexpr uint32_t kLocalSignature = 0x04034b50;
constexpr size_t kEocdSize = 22;
constexpr size_t kCentralHeaderSize = 46;
constexpr size_t kLocalHeaderSize = 30;

}  // namespace

absl::StatusOr<std::unique_ptr<ZipArchive>> ZipArchive::Open(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(auto file, MappedFile::Open(path));
  auto archive = std::unique_ptr<ZipArchive>(new ZipArchive(std::move(file)));
  TANDEM_RETURN_IF_ERROR(archive->ReadCentralDirectory());
  return archive;
}

absl::Status ZipArchive::ReadCentralDirectory() {
  const uint8_t* data = file_->data();
  const size_t size = file_->size();
  auto corrupt = [&](std::string_view what) {
    return absl::DataLossError(StrCat(file_->path(), ": not a valid zip archive (", what, ")"));
  };
  if (size < kEocdSize) return corrupt("too short");
  // The end-of-central-directory record is in the last 64 KiB + 22 bytes (comment length).
  const size_t lowest = size > kEocdSize + 0xffff ? size - kEocdSize - 0xffff : 0;
  size_t eocd = size;
  for (size_t pos = size - kEocdSize + 1; pos-- > lowest;) {
    if (Le32(data + pos) == kEocdSignature) {
      eocd = pos;
      break;
    }
  }
  if (eocd == size) return corrupt("no end of central directory");
  const uint16_t count = Le16(data + eocd + 10);
  const uint32_t cd_size = Le32(data + eocd + 12);
  const uint32_t cd_offset = Le32(data + eocd + 16);
  if (count == 0xffff || cd_offset == 0xffffffffu) {
    return absl::UnimplementedError(StrCat(file_->path(), ": ZIP64 archives are not supported"));
  }
  if (static_cast<uint64_t>(cd_offset) + cd_size > eocd) return corrupt("central directory out of range");
  size_t pos = cd_offset;
  const size_t end = static_cast<size_t>(cd_offset) + cd_size;
  for (uint16_t i = 0; i < count; ++i) {
    if (pos + kCentralHeaderSize > end || Le32(data + pos) != kCentralSignature) {
      return corrupt("bad central directory entry");
    }
    ZipEntry e;
    e.method = Le16(data + pos + 10);
    e.crc32 = Le32(data + pos + 16);
    e.compressed_size = Le32(data + pos + 20);
    e.uncompressed_size = Le32(data + pos + 24);
    const uint16_t name_len = Le16(data + pos + 28);
    const uint16_t extra_len = Le16(data + pos + 30);
    const uint16_t comment_len = Le16(data + pos + 32);
    e.local_header_offset = Le32(data + pos + 42);
    const size_t next = pos + kCentralHeaderSize + name_len + extra_len + comment_len;
    if (next > end) return corrupt("central directory entry overruns");
    e.name.assign(reinterpret_cast<const char*>(data + pos + kCentralHeaderSize), name_len);
    entries_.push_back(std::move(e));
    pos = next;
  }
  return absl::OkStatus();
}

const ZipEntry* ZipArchive::Find(const std::string& name) const {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const ZipEntry& e) { return e.name == name; });
  return it == entries_.end() ? nullptr : &*it;
}

absl::Status ZipArchive::Extract(const ZipEntry& entry, const Sink& sink,
                                 const Progress& progress) const {
  const uint8_t* data = file_->data();
  const size_t size = file_->size();
  auto corrupt = [&](std::string_view what) {
    return absl::DataLossError(StrCat(file_->path(), ": entry ", entry.name, ": ", what));
  };
  const uint64_t lh = entry.local_header_offset;
  if (lh + kLocalHeaderSize > size || Le32(data + lh) != kLocalSignature) {
    return corrupt("bad local header");
  }
  const uint64_t payload = lh + kLocalHeaderSize + Le16(data + lh + 26) + Le16(data + lh + 28);
  if (payload + entry.compressed_size > size) return corrupt("data out of range");
  const uint8_t* in = data + payload;

  uLong crc = crc32(0L, Z_NULL, 0);
  uint64_t produced = 0;
  constexpr size_t kPiece = 1 << 20;
  if (entry.method == 0) {
    if (entry.compressed_size != entry.uncompressed_size) return corrupt("stored sizes differ");
    for (uint64_t off = 0; off < entry.compressed_size; off += kPiece) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kPiece, entry.compressed_size - off));
      crc = crc32(crc, in + off, static_cast<uInt>(n));
      TANDEM_RETURN_IF_ERROR(sink(in + off, n));
      produced += n;
      if (progress) progress(produced, entry.uncompressed_size);
    }
  } else if (entry.method == 8) {
    z_stream zs{};
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) return absl::InternalError("inflateInit2 failed");
    std::vector<uint8_t> out(kPiece);
    uint64_t consumed = 0;
    int rc = Z_OK;
    absl::Status status;
    while (rc != Z_STREAM_END) {
      if (zs.avail_in == 0 && consumed < entry.compressed_size) {
        const uint64_t n = std::min<uint64_t>(kPiece, entry.compressed_size - consumed);
        zs.next_in = const_cast<Bytef*>(in + consumed);
        zs.avail_in = static_cast<uInt>(n);
        consumed += n;
      }
      zs.next_out = out.data();
      zs.avail_out = static_cast<uInt>(out.size());
      rc = inflate(&zs, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END) {
        status = corrupt(StrCat("inflate failed: ", zs.msg ? zs.msg : "error ", rc));
        break;
      }
      const size_t n = out.size() - zs.avail_out;
      if (n == 0 && rc == Z_OK && zs.avail_in == 0 && consumed >= entry.compressed_size) {
        status = corrupt("truncated deflate stream");
        break;
      }
      crc = crc32(crc, out.data(), static_cast<uInt>(n));
      produced += n;
      if (produced > entry.uncompressed_size) {
        status = corrupt("more data than its recorded size");
        break;
      }
      status = sink(out.data(), n);
      if (!status.ok()) break;
      if (progress) progress(produced, entry.uncompressed_size);
    }
    inflateEnd(&zs);
    TANDEM_RETURN_IF_ERROR(status);
  } else {
    return absl::UnimplementedError(
        StrCat("zip entry ", entry.name, " uses compression method ", entry.method));
  }
  if (produced != entry.uncompressed_size) return corrupt("size mismatch");
  if (crc != entry.crc32) return corrupt("CRC-32 mismatch");
  return absl::OkStatus();
}

}  // namespace tandem
