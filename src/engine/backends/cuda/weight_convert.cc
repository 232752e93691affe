#include "engine/backends/cuda/weight_convert.h"

#include <cstring>

#include "common/status_macros.h"
#include "common/strings.h"
#include "gguf/quant.h"

namespace tandem::cuda {

uint16_t F32ToBf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1);  // round to nearest, ties to even
  return static_cast<uint16_t>(u >> 16);
}

float Bf16ToF32(uint16_t x) {
  const uint32_t u = static_cast<uint32_t>(x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

absl::Status DequantizeRowsToBf16(const gguf::TensorInfo& t, int64_t row_begin, int64_t rows,
                                  std::vector<uint16_t>* out) {
  if (t.dims.size() != 2) return absl::InvalidArgumentError(StrCat("tensor ", t.name, " is not a matrix"));
  if (row_begin < 0 || rows < 0 || row_begin + rows > t.rows()) {
    return absl::OutOfRangeError(StrCat("rows outside tensor ", t.name));
  }
  const int64_t cols = t.dims[0];
  const int64_t row_bytes = gguf::RowBytes(t.type, cols);
  std::vector<float> row(cols);
  const size_t at = out->size();
  out->resize(at + static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    TANDEM_RETURN_IF_ERROR(
        gguf::DequantizeRowRef(t.type, t.data + (row_begin + r) * row_bytes, row.data(), cols));
    uint16_t* dst = out->data() + at + r * cols;
    for (int64_t c = 0; c < cols; ++c) dst[c] = F32ToBf16(row[c]);
  }
  return absl::OkStatus();
}

}  // namespace tandem::cuda
