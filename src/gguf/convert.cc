#include "gguf/convert.h"

#include <cstring>
#include <vector>

#include "common/status_macros.h"
#include "common/strings.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "gguf/quant.h"

namespace tandem::gguf {

absl::Status ConvertGguf(const std::string& in_path, const std::string& out_path,
                         const ConvertOptions& options) {
  if (options.target != GgmlType::kF32 && options.target != GgmlType::kF16 &&
      options.target != GgmlType::kBF16) {
    return absl::InvalidArgumentError("conversion targets are F32, F16 and BF16");
  }
  TANDEM_ASSIGN_OR_RETURN(auto in, GgufFile::Open(in_path));
  GgufWriter out;
  for (const std::string& key : in->keys()) {
    if (key == "general.alignment" || key == "general.file_type") continue;
    if (!out.CopyValue(key, *in->Find(key))) {
      return absl::UnimplementedError(StrCat("cannot copy metadata key ", key));
    }
  }
  out.SetUint32("general.file_type", options.target == GgmlType::kF32 ? 0 : options.target == GgmlType::kF16 ? 1 : 32);
  const auto& tensors = in->tensors();
  std::vector<float> row;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = tensors[i];
    const GgmlType target = t.dims.size() == 1 ? GgmlType::kF32 : options.target;
    const int64_t n = t.row_elements(), rows = t.rows();
    const int64_t row_bytes = RowBytes(target, n);
    std::vector<uint8_t> data(static_cast<size_t>(rows * row_bytes));
    row.resize(n);
    const int64_t src_row_bytes = RowBytes(t.type, n);
    for (int64_t r = 0; r < rows; ++r) {
      TANDEM_RETURN_IF_ERROR(DequantizeRowRef(t.type, t.data + r * src_row_bytes, row.data(), n));
      TANDEM_RETURN_IF_ERROR(QuantizeRowRef(target, row.data(), data.data() + r * row_bytes, n));
    }
    out.AddTensor(t.name, t.dims, target, std::move(data));
    if (options.progress) options.progress(i + 1, tensors.size());
  }
  return out.WriteFile(out_path);
}

}  // namespace tandem::gguf
