// Re-encodes every tensor of a GGUF file to another type (e.g. dequantizes a Q4_1 model to
// F32), keeping all metadata. Used by `tandem model convert` and by the fidelity tests, which
// compare against a reference implementation on a copy without quantized weights.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "gguf/ggml_type.h"

namespace tandem::gguf {

struct ConvertOptions {
  GgmlType target = GgmlType::kF32;  // F32, F16 or BF16 (matrices); 1-D tensors stay F32
  // Called after each tensor with (tensors done, total).
  std::function<void(size_t, size_t)> progress;
};

absl::Status ConvertGguf(const std::string& in_path, const std::string& out_path,
                         const ConvertOptions& options);

}  // namespace tandem::gguf
