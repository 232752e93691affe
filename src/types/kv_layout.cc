#include "types/kv_layout.h"

#include <string>
#include <vector>

#include "common/strings.h"

namespace tandem {

bool KvLayoutInfo::operator==(const KvLayoutInfo& o) const { return Mismatch(o).empty(); }

std::string KvLayoutInfo::Describe() const {
  return StrCat("model=", model_id, " layers=", layout.num_layers, " kv_heads=", layout.num_kv_heads,
                " head_dim=", layout.head_dim, " block=", layout.block_size,
                " dtype=", DTypeName(layout.dtype), " format=", block_format);
}

std::string KvLayoutInfo::Mismatch(const KvLayoutInfo& other) const {
  std::vector<std::string> diffs;
  auto check = [&diffs](std::string_view field, const auto& mine, const auto& theirs) {
    if (!(mine == theirs)) diffs.push_back(StrCat(field, " ", mine, " vs ", theirs));
  };
  check("model", model_id, other.model_id);
  check("layers", layout.num_layers, other.layout.num_layers);
  check("kv_heads", layout.num_kv_heads, other.layout.num_kv_heads);
  check("head_dim", layout.head_dim, other.layout.head_dim);
  check("block", layout.block_size, other.layout.block_size);
  check("dtype", DTypeName(layout.dtype), DTypeName(other.layout.dtype));
  check("format", block_format, other.block_format);
  std::string out;
  for (const std::string& d : diffs) {
    if (!out.empty()) out += ", ";
    out += d;
  }
  return out;
}

}  // namespace tandem
