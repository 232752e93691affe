// The packed weight layout of the AVX-512 kernel table (KernelTable::packed_weights).
//
// GGUF stores a quantized matrix row after row, each row a run of 32-element blocks with the
// block's fp16 scale (and Q4_1 min) beside its quants. For decode at batch 1 that costs the GEMV
// more instructions than memory traffic: two rows' nibbles come from two places and need a
// shuffle to line up, and each scale is a scalar load. The packed layout keeps the same bytes per
// row but regroups them:
//   - rows in groups of four (the last group padded with zero rows), each group's bytes where the
//     GGUF layout has them (group g starts at 4 * g * row_bytes);
//   - inside a group, block b of the four rows stored together: first their quants, then the four
//     fp16 scales d0..d3 and, for Q4_1, the four fp16 mins m0..m3;
//   - Q4_0 / Q4_1 quants: 64 bytes; byte k holds element k % 32 of row k / 32 in its low nibble and
//     element k % 32 of row 2 + k / 32 in its high nibble, so one 512-bit load, a mask and a shift
//     give rows 0-1 and rows 2-3 as bytes in element order (VPDPBUSD's operand);
//   - Q8_0 quants: the four rows' 32 bytes one after the other.
// Packing only moves bytes: every GEMM over the packed layout computes exactly the bits the
// scalar table computes over the GGUF layout (tests/unit/engine/cpu_kernels_test.cc).
#pragma once

#include <cstdint>

#include "gguf/ggml_type.h"

namespace tandem::cpu {

constexpr int64_t kPackRows = 4;

// Q4_0, Q4_1 and Q8_0: the formats the packed layout is defined for.
bool PackableType(gguf::GgmlType type);
// Bytes of a packed rows x cols matrix (rows rounded up to a multiple of 4).
int64_t PackedBytes(gguf::GgmlType type, int64_t rows, int64_t cols);
// Packs row groups [group_begin, group_end) of the GGUF-layout matrix `src` (rows x cols) into
// `dst` (PackedBytes long). Groups are independent: threads may pack disjoint ranges.
void PackWeightGroups(gguf::GgmlType type, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst,
                      int64_t group_begin, int64_t group_end);
// Row n of the packed matrix `packed`, back in the GGUF layout (RowBytes(type, cols) bytes).
void UnpackRow(gguf::GgmlType type, const uint8_t* packed, int64_t n, int64_t cols, uint8_t* dst);

}  // namespace tandem::cpu
