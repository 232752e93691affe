// Who a model is, as the router and the workers compare it: a short identity of the weights and
// shape, and the context length. Read from the GGUF file without loading the model, so that
// the router (which only tokenizes) never needs the engine.
//
// Thread-safety: pure functions of the file.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "gguf/gguf_file.h"

namespace tandem {

// A short stable identity of a GGUF model's weights and shape (hex digest over the file size,
// the metadata, the tensor table and samples of the tensor data). Workers and the router
// compare it so that they never mix models.
std::string ModelIdentity(const gguf::GgufFile& file);

struct ModelInfo {
  std::string id;              // ModelIdentity
  std::string architecture;    // general.architecture
  std::string name;            // general.name, empty when absent
  int context_length = 0;      // <architecture>.context_length
};

// InvalidArgument when the architecture or its context length is missing or out of range.
absl::StatusOr<ModelInfo> ReadModelInfo(const gguf::GgufFile& file);

}  // namespace tandem
