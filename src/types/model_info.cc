#include "types/model_info.h"

#include <algorithm>

#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem {

std::string ModelIdentity(const gguf::GgufFile& f) {
  Sha256 h;
  h.Update(StrCat("size=", f.file_size(), ";"));
  for (const std::string& key : f.keys()) h.Update(StrCat(key, "=", gguf::GgufFile::Describe(*f.Find(key), 4), ";"));
  for (const auto& t : f.tensors()) {
    h.Update(StrCat(t.name, ":", static_cast<int>(t.type), ":", t.offset, ":", t.num_bytes, ";"));
    // A sample of every tensor's bytes: its first and last 256.
    const int64_t n = std::min<int64_t>(256, t.num_bytes);
    h.Update(t.data, static_cast<size_t>(n));
    h.Update(t.data + t.num_bytes - n, static_cast<size_t>(n));
  }
  return ToHex(h.Finish()).substr(0, 16);
}

absl::StatusOr<ModelInfo> ReadModelInfo(const gguf::GgufFile& f) {
  ModelInfo info;
  TANDEM_ASSIGN_OR_RETURN(auto arch, f.GetString("general.architecture"));
  info.architecture = std::string(arch);
  if (auto name = f.GetString("general.name"); name.ok()) info.name = std::string(*name);
  const std::string key = info.architecture + ".context_length";
  TANDEM_ASSIGN_OR_RETURN(uint64_t context, f.GetUint(key));
  if (context == 0 || context > (1u << 24)) {
    return absl::InvalidArgumentError(StrCat(f.path(), ": ", key, " = ", context, " is out of range"));
  }
  info.context_length = static_cast<int>(context);
  info.id = ModelIdentity(f);
  return info;
}

}  // namespace tandem
