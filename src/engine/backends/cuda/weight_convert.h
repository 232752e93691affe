// Host-side weight preparation for the CUDA backend: any GGUF type the CPU backend computes
// with, dequantized by the reference routines (gguf/quant.h) and rounded to bf16 (round to
// nearest even; NaN stays NaN). Pure CPU code, unit-tested without a GPU.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "gguf/gguf_file.h"

namespace tandem::cuda {

uint16_t F32ToBf16(float x);
float Bf16ToF32(uint16_t x);

// Rows [row_begin, row_begin + rows) of the 2-D tensor `t` as bf16, row-major
// ([rows][t.dims[0]]), appended to *out.
absl::Status DequantizeRowsToBf16(const gguf::TensorInfo& t, int64_t row_begin, int64_t rows,
                                  std::vector<uint16_t>* out);

}  // namespace tandem::cuda
