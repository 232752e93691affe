#include "engine/backends/cpu/weight_packing.h"

#include <cstring>

#include "common/check.h"
#include "gguf/quant.h"

namespace tandem::cpu {
namespace {

using gguf::GgmlType;
using gguf::kQK;

// Bytes of one block of one row, of its quants, and of its fp16 fields (scale, and min).
int64_t BlockBytes(GgmlType type) { return gguf::RowBytes(type, kQK); }
int64_t QuantBytes(GgmlType type) { return type == GgmlType::kQ8_0 ? kQK : kQK / 2; }
int64_t HalfFields(GgmlType type) { return type == GgmlType::kQ4_1 ? 2 : 1; }

// Element e (0..31) of a GGUF Q4 block's quants: e < 16 in the low nibble of byte e, else the
// high nibble of byte e - 16.
uint8_t Nibble(const uint8_t* qs, int e) { return e < 16 ? qs[e] & 0x0f : qs[e - 16] >> 4; }

// One block of up to four rows (null rows are zero) into one packed record.
void PackRecord(GgmlType type, const uint8_t* const rows[kPackRows], uint8_t* rec) {
  const int64_t fields = HalfFields(type), quant = QuantBytes(type);
  uint8_t* halves = rec + kPackRows * quant;
  std::memset(rec, 0, kPackRows * BlockBytes(type));
  for (int r = 0; r < kPackRows; ++r) {
    if (rows[r] == nullptr) continue;
    for (int f = 0; f < fields; ++f) std::memcpy(halves + 2 * (f * kPackRows + r), rows[r] + 2 * f, 2);
    const uint8_t* qs = rows[r] + 2 * fields;
    if (type == GgmlType::kQ8_0) {
      std::memcpy(rec + r * kQK, qs, kQK);
      continue;
    }
    const int shift = r < 2 ? 0 : 4;
    uint8_t* base = rec + (r % 2) * kQK;
    for (int e = 0; e < kQK; ++e) base[e] |= static_cast<uint8_t>(Nibble(qs, e) << shift);
  }
}

}  // namespace

bool PackableType(GgmlType type) {
  return type == GgmlType::kQ4_0 || type == GgmlType::kQ4_1 || type == GgmlType::kQ8_0;
}

int64_t PackedBytes(GgmlType type, int64_t rows, int64_t cols) {
  return (rows + kPackRows - 1) / kPackRows * kPackRows * gguf::RowBytes(type, cols);
}

void PackWeightGroups(GgmlType type, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst,
                      int64_t group_begin, int64_t group_end) {
  TANDEM_CHECK(PackableType(type));
  const int64_t row_bytes = gguf::RowBytes(type, cols), block = BlockBytes(type), nb = cols / kQK;
  for (int64_t g = group_begin; g < group_end; ++g) {
    uint8_t* group = dst + g * kPackRows * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blocks[kPackRows];
      for (int r = 0; r < kPackRows; ++r) {
        const int64_t n = g * kPackRows + r;
        blocks[r] = n < rows ? src + n * row_bytes + b * block : nullptr;
      }
      PackRecord(type, blocks, group + b * kPackRows * block);
    }
  }
}

void UnpackRow(GgmlType type, const uint8_t* packed, int64_t n, int64_t cols, uint8_t* dst) {
  TANDEM_CHECK(PackableType(type));
  const int64_t row_bytes = gguf::RowBytes(type, cols), block = BlockBytes(type), nb = cols / kQK;
  const int64_t fields = HalfFields(type), quant = QuantBytes(type);
  const int r = static_cast<int>(n % kPackRows);
  const uint8_t* group = packed + (n / kPackRows) * kPackRows * row_bytes;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* rec = group + b * kPackRows * block;
    uint8_t* out = dst + b * block;
    for (int f = 0; f < fields; ++f) std::memcpy(out + 2 * f, rec + kPackRows * quant + 2 * (f * kPackRows + r), 2);
    uint8_t* qs = out + 2 * fields;
    if (type == GgmlType::kQ8_0) {
      std::memcpy(qs, rec + r * kQK, kQK);
      continue;
    }
    const uint8_t* base = rec + (r % 2) * kQK;
    const int shift = r < 2 ? 0 : 4;
    for (int e = 0; e < kQK / 2; ++e) {
      const uint8_t lo = (base[e] >> shift) & 0x0f, hi = (base[e + 16] >> shift) & 0x0f;
      qs[e] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

}  // namespace tandem::cpu
